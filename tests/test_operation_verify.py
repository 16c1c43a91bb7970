"""`verify` on what the central host opened (issue 17): a summary (files checked, findings by
kind, worst first) with details on request; references to the localizers the selection left
out are information, not warnings; the batches' manifest.json files are not findings."""

from __future__ import annotations

import json

import pydicom
from pipeline_fixtures import Site, site  # noqa: F401


def test_verify_of_opened_batches_is_a_clean_summary(site: Site, cli) -> None:
    site.consent_all(cli)
    run = site.gateway("run")
    assert run.returncode == 0, run.stderr
    site.open_all()
    opened = site.central / "opened"
    manifests = sorted(opened.rglob("manifest.json"))
    assert len(manifests) == 7

    data = json.loads(cli("verify", opened, "--against", site.export.root, "--json").stdout)
    counts = data["counts"]
    assert data["clean"] is True
    assert counts["warnings"] == 0 and counts["errors"] == 0, data["summary"]
    assert counts["batch_manifests"] == 7 and counts["output_files"] == counts["dicom_outputs"] + 7
    assert not [f for f in data["findings"] if f["file"].endswith("manifest.json")]
    refs = [f for f in data["findings"] if f["check"] == "dangling-reference"]
    assert refs and all(f["severity"] == "info" and f["kind"] == "source-not-released" for f in refs)
    assert data["summary"] == [{"severity": "info", "check": "dangling-reference", "kind": "source-not-released",
                                "findings": len(refs), "files": len({f["file"] for f in refs})}]

    text = cli("verify", opened, "--against", site.export.root)
    assert text.exit_code == 0, text.stdout
    assert "7 batch manifests" in text.stdout
    assert f"clean: no residual PHI found; {len(refs)} note(s) for information." in text.stdout
    assert "Findings by kind, worst first" in text.stdout
    assert "ReferencedSOPInstanceUID" not in text.stdout  # no per-file tables unless asked
    assert len(text.stdout.splitlines()) < 15
    details = cli("verify", opened, "--against", site.export.root, "--details")
    assert details.exit_code == 0 and "ReferencedSOPInstanceUID" in details.stdout


def test_worst_first_summary_names_the_files_with_errors(site: Site, cli) -> None:
    site.consent_all(cli)
    assert site.gateway("run").returncode == 0
    site.open_all()
    opened = site.central / "opened"
    leaky = sorted(opened.rglob("*.dcm"))[3]
    ds = pydicom.dcmread(leaky)
    ds.StudyDescription = f"CT {site.export.patients[0].family}"
    ds.save_as(leaky)
    result = cli("verify", opened, "--against", site.export.root)
    assert result.exit_code == 13
    lines = result.stdout.splitlines()
    table = [line for line in lines if "phi-token" in line or "dangling-reference" in line]
    assert "error" in table[0] and "phi-token" in table[0]  # worst first
    assert any(str(leaky.relative_to(opened)) in line and "StudyDescription (patient-name-part)" in line
               for line in lines)
    assert site.export.patients[0].family not in result.stdout


def _strings(value: object, out: list[str]) -> list[str]:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)
    return out


def test_a_manifest_is_searched_as_text(site: Site, cli) -> None:
    """A Study ID glued inside a SHA-256 digest is chance, not a leak (the raw-bytes search found it
    there in about one verify in twenty); a patient's name in one of its strings is a finding."""
    site.consent_all(cli)
    assert site.gateway("run").returncode == 0
    site.open_all()
    opened = site.central / "opened"
    manifest = sorted(opened.rglob("manifest.json"))[0]
    data = json.loads(manifest.read_text(encoding="utf-8"))
    digests = [s for s in _strings(data, []) if len(s) == 64 and all(c in "0123456789abcdef" for c in s)]
    assert digests
    study_id = str(pydicom.dcmread(site.export.files[0], stop_before_pixels=True).StudyID)
    assert len(study_id) >= 4
    text = manifest.read_text(encoding="utf-8").replace(digests[0], digests[0][:10] + study_id
                                                       + digests[0][10 + len(study_id):])
    manifest.write_text(text, encoding="utf-8")
    clean = json.loads(cli("verify", opened, "--against", site.export.root, "--json").stdout)
    assert clean["clean"] is True, [f for f in clean["findings"] if f["severity"] != "info"]

    family = site.export.patients[0].family
    manifest.write_text(text.replace('"files":', f'"note": "for {family}", "files":', 1), encoding="utf-8")
    leak = cli("verify", opened, "--against", site.export.root, "--json")
    assert leak.exit_code == 13
    found = [f for f in json.loads(leak.stdout)["findings"] if f["file"].endswith("manifest.json")]
    assert [(f["check"], f["severity"]) for f in found] == [("phi-token", "error")], found
