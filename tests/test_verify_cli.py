"""`sfr-gateway verify`: exit codes, table and JSON output, --reveal, bad paths."""

from __future__ import annotations

import json
from pathlib import Path

from verify_fixtures import CleanSet, clean_set, planted  # noqa: F401  (fixtures)

from sfr_gateway.errors import EXIT_CODES, LeaksFoundError


def test_clean_output_exits_0(cli, clean_set: CleanSet) -> None:  # noqa: F811
    result = cli("verify", clean_set.out, "--against", clean_set.src)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "clean" in result.stdout
    assert f"Checked {len(clean_set.files)} output files" in result.stdout


def test_json_schema_on_clean_output(cli, clean_set: CleanSet) -> None:  # noqa: F811
    result = cli("verify", clean_set.out, "--against", clean_set.src, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "sfr-gateway/verify/1"
    assert data["clean"] is True and data["findings"] == [] and data["revealed"] is False
    assert data["pixel_data_searched"] is False
    counts = data["counts"]
    assert counts["output_files"] == counts["dicom_outputs"] == counts["paired_outputs"] == len(clean_set.files)
    assert counts["errors"] == counts["warnings"] == 0
    assert counts["tokens_by_kind"]["patient-name-part"] == 9
    assert data["files_per_second"] > 0


def test_leak_exits_13_with_table_and_no_values(cli, planted: CleanSet) -> None:  # noqa: F811
    patient = planted.export.patients[0]
    planted.edit(planted.image_of(0), lambda ds: setattr(ds, "StudyDescription", "CT thorax HELENE LEFEVRE"))
    result = cli("verify", planted.out, "--against", planted.src)
    assert LeaksFoundError.exit_code == 13 and 13 in EXIT_CODES
    assert result.exit_code == 13
    assert "StudyDescription" in result.stdout and "patient-name-part" in result.stdout
    assert "2 problem(s) in 1 output file(s)" in result.stderr
    for secret in ("HELENE", "LEFEVRE", "Hélène", patient.patient_id):
        assert secret not in result.stdout + result.stderr


def test_json_findings_and_reveal(cli, planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)
    planted.edit(target, lambda ds: setattr(ds, "StudyDescription", "CT thorax HELENE LEFEVRE"))
    result = cli("verify", planted.out, "--against", planted.src, "--json")
    assert result.exit_code == 13
    data = json.loads(result.stdout)
    assert data["clean"] is False
    rel = target.relative_to(planted.out).as_posix()
    assert data["findings"] == [
        {"severity": "error", "check": "phi-token", "file": rel, "path": "(0008,1030)", "keyword": "StudyDescription",
         "kind": "patient-name-part", "kinds": ["patient-name-part"], "vr": "LO", "where": "text"},
    ] * 2
    assert data["counts"]["by_check"] == {"error:phi-token": 2}
    revealed = cli("verify", planted.out, "--against", planted.src, "--json", "--reveal")
    assert revealed.exit_code == 13 and "--reveal prints patient values" in revealed.stderr
    assert sorted(f["token"] for f in json.loads(revealed.stdout)["findings"]) == ["HELENE", "LEFEVRE"]


def test_ignore_kind(cli, planted: CleanSet) -> None:  # noqa: F811
    planted.edit(planted.files[0], lambda ds: setattr(ds, "InstitutionName", "Hôpital Européen Georges-Pompidou"))
    assert cli("verify", planted.out, "--against", planted.src).exit_code == 13
    result = cli("verify", planted.out, "--against", planted.src,
                 "--ignore-kind", "institution-name", "--ignore-kind", "institution-name-part")
    assert result.exit_code == 0, result.stdout


def test_missing_paths_are_input_errors(cli, tmp_path: Path, clean_set: CleanSet) -> None:  # noqa: F811
    assert cli("verify", tmp_path / "nope", "--against", clean_set.src).exit_code == 8
    assert cli("verify", clean_set.out, "--against", tmp_path / "nope").exit_code == 8
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("not dicom")
    result = cli("verify", clean_set.out, "--against", empty)
    assert result.exit_code == 8 and "no readable DICOM" in result.stderr
    assert cli("verify", clean_set.out).exit_code == 2  # --against is required


def test_output_inside_source_tree_is_not_read_as_source(cli, tmp_path: Path, clean_set: CleanSet) -> None:  # noqa: F811
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(clean_set.src, tree)
    shutil.copytree(clean_set.out, tree / "deid")
    result = cli("verify", tree / "deid", "--against", tree, "--json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["counts"]["source_files"] == len(clean_set.export.files)
