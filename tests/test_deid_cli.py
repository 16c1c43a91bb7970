"""``sfr-gateway deidentify`` and ``profile show`` end to end, on the generated sample export."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from sfr_gateway.sample import SampleExport
from tests.conftest import run_cli
from tests.deid_fixtures import norm


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tokens(sample: SampleExport) -> list[str]:
    out = []
    for patient in sample.patients:
        for kind, values in patient.tokens.items():
            out.extend(v for v in values if len(v) >= 4 and kind not in ("date",))
    return out


@pytest.fixture(scope="module")
def deid_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised HOME shared by this module's tests (one de-identification run)."""
    path = tmp_path_factory.mktemp("deid") / "home"
    assert run_cli("--home", path, "init", "--site-id", "TEST01").exit_code == 0
    return path


@pytest.fixture(scope="module")
def deidentified(deid_home: Path, sample_export: SampleExport):
    before = _digests(sample_export.root)
    out = deid_home.parent / "out"
    result = run_cli("--home", deid_home, "deidentify", sample_export.root, "--output", out, "--json", "--workers", "2")
    assert result.exit_code == 0, result.stderr
    assert _digests(sample_export.root) == before  # sources untouched (bytes and mtime)
    return out, json.loads(result.stdout), result


@pytest.fixture
def home(deid_home: Path) -> Path:
    return deid_home


def test_deidentify_sample_export(deidentified, home: Path, sample_export: SampleExport) -> None:
    out, summary, _ = deidentified
    files = sorted(out.rglob("*.dcm"))
    assert summary["released"] == len(files) > 0
    assert summary["seen"] == len(sample_export.files)
    assert summary["quarantined_by_reason"].get("burned-in-suspected", 0) >= 1  # dose reports
    assert summary["quarantined_by_reason"].get("sop-class-not-allowed", 0) >= 1  # MR studies
    for path in files:
        patient, study, series, name = path.relative_to(out).parts
        ds = pydicom.dcmread(path)
        assert patient.startswith("TEST01-") and ds.PatientID == patient
        assert (study, series, name) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID + ".dcm")
    records = [json.loads(p.read_text()) for p in (home / "quarantine").glob("*.json")]
    assert len(records) == summary["quarantined"]
    assert all(r["reason"] and r["source"] for r in records)
    assert not list((home / "quarantine").glob("*.dcm"))  # no PHI copies unless configured
    from sfr_gateway.ledger import open_ledger

    with open_ledger(home / "state.db") as ledger:
        event = next(e for e in ledger.events() if e["command"] == "deidentify")
    assert event["detail"]["released"] == summary["released"] and event["result"] == "partial"


def test_no_planted_phi_in_outputs_or_reports(deidentified, home: Path, sample_export: SampleExport) -> None:
    out, _, result = deidentified
    tokens = _tokens(sample_export)
    report = result.stdout + result.stderr + "".join(p.read_text() for p in (home / "quarantine").glob("*.json"))
    for path in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        text = norm("\n".join(str(e.value) for e in ds.iterall() if e.tag != 0x7FE00010 and e.VR != "SQ"))
        for token in tokens:
            assert norm(token) not in text, (path.name, "planted token leaked")
    sources = {str(p.parent) for p in sample_export.files}
    for token in tokens:  # reports may name paths (allowed) but no value
        stripped = report
        for source in sources:
            stripped = stripped.replace(source, "")
        assert token not in stripped


def test_profile_show_formats(cli) -> None:
    result = cli("profile", "show", "sfr-covid", "--format", "json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ps315_edition"] == "2026d" and len(info["attributes"]) == 657
    md = cli("profile", "show", "basic", "--option", "retain-uids", "--format", "markdown")
    assert md.exit_code == 0 and "| (0008,0018) | SOPInstanceUID | SOP Instance UID | K |" in md.stdout
    table = cli("profile", "show", "basic")
    assert table.exit_code == 0 and "PatientName" in table.stdout


def test_bad_profile_and_option_exit_5_before_reading(cli, home: Path, tmp_path: Path) -> None:
    result = cli("--home", home, "deidentify", tmp_path, "--output", tmp_path / "o", "--option", "retain-all")
    assert result.exit_code == 5 and "unknown option 'retain-all'" in result.stderr
    result = cli("--home", home, "deidentify", tmp_path, "--output", tmp_path / "o", "--profile", "nope")
    assert result.exit_code == 5
    assert not (tmp_path / "o").exists()


def test_deidentify_requires_init(cli, tmp_path: Path) -> None:
    result = cli("--home", tmp_path / "nohome", "deidentify", tmp_path, "--output", tmp_path / "o")
    assert result.exit_code == 3 and "init" in result.stderr


@pytest.mark.tool("dciodvfy", package="dicom3tools")
def test_dciodvfy_reports_no_new_errors(deidentified, sample_export: SampleExport) -> None:
    out, _, _ = deidentified
    sources = {}
    for path in sample_export.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "CT" and "LOCALIZER" not in ds.ImageType and ds.SOPClassUID.endswith(".2"):
            sources[ds.SeriesDescription + str(ds.InstanceNumber)] = path
    outputs = {}
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        outputs.setdefault(ds.SeriesDescription + str(ds.InstanceNumber), path)

    def errors(path: Path) -> set[str]:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
        return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}

    checked = 0
    for key, src in list(sources.items())[:6]:
        if key in outputs:
            new = errors(outputs[key]) - errors(src)
            assert not new, (key, new)
            checked += 1
    assert checked >= 3
