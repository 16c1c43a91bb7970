"""`deidentify` fills the mapping through the one write path `run` uses: lookups answer both ways
for every patient whose files it wrote, and `mapping regenerate` recomputes the same entries."""

from __future__ import annotations

import json
from pathlib import Path

from mapping_fixtures import stored_entries

from sfr_gateway.sample import SampleExport


def _written(out: Path) -> dict[str, set[str]]:
    """{patient pseudonym: {new study UID}} of the output tree (``OUT/<pseudonym>/<study>/...``)."""
    return {p.name: {s.name for s in p.iterdir()} for p in out.iterdir() if p.is_dir()}


def test_lookups_answer_after_deidentify_and_regenerate_agrees(home: Path, sample_export: SampleExport,
                                                                tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    r = cli("--home", home, "deidentify", sample_export.root, "--output", out, "--json")
    assert r.exit_code == 0, r.stderr
    written = _written(out)
    assert len(written) >= 3
    by_id = {(p.patient_id, p.issuer): p for p in sample_export.patients}
    for pseudonym, studies in written.items():
        r = cli("--home", home, "mapping", "lookup", pseudonym, "--json")
        assert r.exit_code == 0, r.stderr
        [match] = json.loads(r.stdout)["matches"]
        patient = by_id[(match["patient_id"], match["issuer"])]
        assert {s["new_study_uid"] for s in match["studies"]} == studies
        assert {s["study_uid"] for s in match["studies"]} <= set(patient.study_uids)
        r = cli("--home", home, "mapping", "lookup", "--patient-id", patient.patient_id, "--issuer", patient.issuer,
                "--json")
        assert r.exit_code == 0, r.stderr
        assert [m["pseudonym"] for m in json.loads(r.stdout)["matches"]] == [pseudonym]

    before = stored_entries(home)
    assert len(before) == sum(len(s) for s in written.values())
    r = cli("--home", home, "mapping", "regenerate", sample_export.root, "--all-studies", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["unchanged"] == len(before) and report["mismatches"] == []
    assert before <= stored_entries(home)  # every entry deidentify recorded, recomputed the same


def test_deidentify_again_records_nothing_new(home: Path, sample_export: SampleExport, tmp_path: Path, cli) -> None:
    for _ in range(2):
        r = cli("--home", home, "deidentify", sample_export.root, "--output", tmp_path / "out", "--json")
        assert r.exit_code == 0, r.stderr
    assert len(stored_entries(home)) == sum(len(s) for s in _written(tmp_path / "out").values())
