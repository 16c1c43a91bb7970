"""The report must not become a PHI leak: masked by default in every format; --reveal is explicit and 0600."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest
from audit_fixtures import KEYS, leaks, make_small_export, plan_for, planted_tokens

from sfr_gateway.audit.mask import Masker
from sfr_gateway.deid import PseudonymKeys
from sfr_gateway.sample import SampleExport


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    return make_small_export(tmp_path_factory)


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "html"])
def test_default_report_holds_no_planted_phi(home: Path, small_export: SampleExport, cli, tmp_path: Path, fmt: str) -> None:
    report = tmp_path / f"audit.{fmt}"
    result = cli("--home", home, "audit", "--all", small_export.root, "--format", fmt, "--output", report)
    assert result.exit_code == 0, result.stderr
    text = report.read_text(encoding="utf-8")
    assert len(text) > 1000
    assert leaks(text + result.stdout + result.stderr, planted_tokens(small_export.patients)) == []
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_stdout_report_holds_no_planted_phi(home: Path, small_export: SampleExport, cli) -> None:
    result = cli("--home", home, "audit", "--all", small_export.root, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["record"] for r in rows} == {"attribute", "quarantine", "flag"}
    assert all(r["before_value"] == "" and r["after_value"] == "" for r in rows)
    assert leaks(result.stdout, planted_tokens(small_export.patients)) == []


def test_reveal_shows_values_warns_and_writes_0600(home: Path, small_export: SampleExport, cli, tmp_path: Path) -> None:
    report = tmp_path / "revealed.json"
    result = cli("--home", home, "audit", "--all", small_export.root, "--format", "json", "--reveal", "--output", report)
    assert result.exit_code == 0, result.stderr
    assert "WARNING" in result.stderr and "REAL patient values" in result.stderr
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["values"] == "revealed"
    # the oracle works: with --reveal the planted names, IDs and dates are there
    found = leaks(report.read_text(encoding="utf-8"), planted_tokens(small_export.patients))
    assert {"name", "id", "birth_date", "accession", "physician"} <= set(found)


def test_masked_values_correlate_without_showing() -> None:
    masker = Masker(KEYS.secret)
    a = masker.value("DUPONT^JEAN", "PN")
    assert a == {"kind": "person-name", "length": 11, "vm": 1, "fingerprint": a["fingerprint"]}
    assert masker.value(b"DUPONT^JEAN ", "PN") == a  # raw bytes and converted value: same fingerprint
    assert masker.value("DUPONT^JEANNE", "PN")["fingerprint"] != a["fingerprint"]
    other = Masker(PseudonymKeys(bytes(32), "TEST01").secret)
    assert other.value("DUPONT^JEAN", "PN")["fingerprint"] != a["fingerprint"]  # keyed: no guessing without the secret
    assert masker.value(["ORIGINAL", "PRIMARY"], "CS")["vm"] == 2
    assert masker.value("", "LO") == {"kind": "empty", "length": 0, "vm": 0, "fingerprint": None}
    assert masker.value(None, "LO") is None
    assert Masker(KEYS.secret, reveal=True).value("A\\B", "LO")["value"] == ["A", "B"]


def test_json_and_csv_carry_the_same_records(small_export: SampleExport) -> None:
    from sfr_gateway.audit import flatten, run_audit

    plan = plan_for("sfr-covid")
    j, c = io.BytesIO(), io.BytesIO()
    run_audit([small_export.root], plan, KEYS, j, "json")
    run_audit([small_export.root], plan, KEYS, c, "csv")
    data = json.loads(j.getvalue())
    from_json = [row for inst in data["instances"] for row in flatten(inst)]
    from_csv = list(csv.DictReader(io.StringIO(c.getvalue().decode("utf-8"))))
    assert from_csv == from_json
    assert len(from_csv) > len(small_export.files) * 50
    assert data["totals"]["attributes"] == sum(r["record"] == "attribute" for r in from_csv)
