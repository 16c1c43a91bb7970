"""The audit command: a dry run that changes nothing, fails like deidentify on bad profiles, flags risks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from audit_fixtures import KEYS, make_small_export, plan_for

from sfr_gateway.audit import AuditSettings, iter_audits
from sfr_gateway.audit.risk import free_text_flag, text_patterns
from sfr_gateway.sample import SampleExport


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    return make_small_export(tmp_path_factory)


def _state(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_audit_changes_nothing(home: Path, small_export: SampleExport, cli, tmp_path: Path) -> None:
    before, home_before = _state(small_export.root), _state(home)
    report = tmp_path / "reports" / "audit.json"
    result = cli("--home", home, "audit", "--all", small_export.root, "--format", "json", "--output", report)
    assert result.exit_code == 0, result.stderr
    assert _state(small_export.root) == before
    assert _state(home) == home_before  # no quarantine record, no ledger write
    assert sorted(p.name for p in report.parent.iterdir()) == ["audit.json"]  # no temp file left
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["schema"] == "sfr-gateway.audit/1" and data["totals"]["quarantined"] > 0


def test_unknown_profile_fails_before_reading(home: Path, small_export: SampleExport, cli) -> None:
    result = cli("--home", home, "audit", "--all", small_export.root, "--profile", "no-such-profile")
    assert result.exit_code == 5
    assert "unknown profile" in result.stderr and result.stdout == ""


def test_missing_source_is_an_input_error(home: Path, cli, tmp_path: Path) -> None:
    report = tmp_path / "audit.csv"
    result = cli("--home", home, "audit", "--all", tmp_path / "nowhere", "--format", "csv", "--output", report)
    assert result.exit_code == 8
    assert not report.exists()


def test_workers_give_the_same_report(home: Path, small_export: SampleExport, cli, tmp_path: Path) -> None:
    reports = []
    for workers in ("1", "2"):
        out = tmp_path / f"audit-{workers}.json"
        assert cli("--home", home, "audit", "--all", small_export.root, "--format", "json", "-o", out,
                   "-j", workers).exit_code == 0
        data = json.loads(out.read_text(encoding="utf-8"))
        data.pop("generated")
        reports.append(data)
    assert reports[0] == reports[1]


def test_table_on_stdout_and_option_changes_decisions(home: Path, small_export: SampleExport, cli) -> None:
    plain = cli("--home", home, "audit", "--all", small_export.root)
    kept = cli("--home", home, "audit", "--all", small_export.root, "--option", "retain-uids")
    assert plain.exit_code == kept.exit_code == 0
    assert "Decisions per attribute" in plain.stdout and "would be released" in plain.stdout
    assert "StudyInstanceUID" in plain.stdout
    assert "retain-uids" in kept.stdout and kept.stdout != plain.stdout


def test_flags_of_the_sample(small_export: SampleExport) -> None:
    audits = list(iter_audits([small_export.root], plan_for("sfr-covid"), KEYS, AuditSettings(thumbnails=False)))
    by_kind: dict[str, set[str]] = {}
    for a in audits:
        for f in a.flags:
            by_kind.setdefault(f.kind, set()).add(f.detail)
    dose = [a for a in audits if a.file.endswith("dose_0000.dcm")]
    assert dose and all(a.status == "quarantined" and a.quarantine and a.quarantine["reason"] == "burned-in-suspected"
                        for a in dose)
    assert all({"burned-in-suspected", "unusual-sop-class"} <= {f.kind for f in a.flags} for a in dose)
    assert any("SFR_TEST_PHI" in d for d in by_kind["unknown-private-creator"])
    assert not any("GEMS_PARM_01" in d for d in by_kind["unknown-private-creator"])  # in the safe-private table
    # "Contrôle Mme <name>" cleaned to "Contrôle Mme": still capitalised words, flagged without the value
    comments = {f.detail for a in audits for f in a.flags if f.path == "ImageComments"}
    assert comments == {"kept text contains capitalised words"}


def test_text_patterns() -> None:
    assert text_patterns(["CT THORAX SANS INJECTION"]) == []
    assert text_patterns(["THORAX 1.25"]) == ["digits"]
    assert text_patterns(["Contrôle Mme"]) == ["capitalised words"]
    assert "date-like pattern" in text_patterns(["vu le 12/03/2020"])
    assert "date-like pattern" in text_patterns(["SCANNER DU 3 MARS 2021"])
    assert free_text_flag("Manufacturer", "Manufacturer", "LO", ["Siemens Healthineers"]) is None
    assert free_text_flag("OperatorsName", "OperatorsName", "PN", ["TECH^Julien"]).detail == "person name kept"  # type: ignore[union-attr]
    assert free_text_flag("Modality", "Modality", "CS", ["CT 2"]) is None


def test_cli_module_is_light_at_import() -> None:
    code = ("import sys, sfr_gateway.cli.audit; bad = {'pydicom', 'numpy', 'rich', 'sfr_gateway.deid'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
