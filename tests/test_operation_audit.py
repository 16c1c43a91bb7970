"""`audit` agrees with `run` (issue 17): by default it applies the run's selection, consent gate
and duplicate rule (the run's own functions), says per study why it would or would not be
released, and carries `would_release`, equal to `run --dry-run --json`'s; `run` then releases
exactly that many instances. The HOME is left as it was by the audit. `--all` audits every file.
The HTML page renders in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from operation_fixtures import own_site  # noqa: F401
from pipeline_fixtures import Site
from tool_fixtures import require_tool

ELIGIBLE = 84  # eligible instances of the sample export (test_pipeline_run)


def _state(root: Path) -> dict[str, str]:
    """Every file of HOME and its content, the log file aside (the scan may note shared UIDs there)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.parent.name != "logs"}


def _partly_consented(site: Site, cli) -> None:
    """Two patients consented, one refused, the others unknown; plus a byte-identical re-export
    of a consented patient's slice in another folder (released once)."""
    patients = site.export.patients
    for p in patients[:2]:
        assert cli("--home", site.home, "consent", "set", p.patient_id, "consented", "--issuer", p.issuer,
                   "--date", "2026-01-15").exit_code == 0
    assert cli("--home", site.home, "consent", "set", patients[2].patient_id, "refused", "--issuer",
               patients[2].issuer, "--date", "2026-01-15").exit_code == 0
    first = sorted((site.export.root / "P0000" / "S00").glob("ser02_*.dcm"))[0]
    copy = site.export.root / "zz-reexport" / first.name
    copy.parent.mkdir()
    shutil.copy2(first, copy)


def test_audit_and_dry_run_agree_and_run_releases_that_many(own_site: Site, cli, tmp_path: Path) -> None:
    site = own_site
    _partly_consented(site, cli)
    before = _state(site.home)
    audit = site.gateway("audit", "--format", "json")
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert _state(site.home) == before  # the audit scanned a copy of the ledger: HOME as it was

    dry = site.gateway("run", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    would = json.loads(dry.stdout)["would_release"]
    assert report["would_release"] == would
    assert 0 < would < ELIGIBLE  # excluded series and waiting patients are not counted

    released = [i for i in report["instances"] if i["status"] == "released"]
    assert len(released) == would
    why = {(i["why"]["stage"], i["why"]["reason"]) for i in report["instances"] if i["status"] == "not-released"}
    assert {("selection", "localizer"), ("selection", "dose-report"), ("consent", "refused"),
            ("consent", "unknown"), ("duplicate", "identical-copy")} <= why
    verdicts = [s["verdict"] for s in report["studies"]]
    assert any(v.startswith("would release 12") for v in verdicts)
    assert any("refused (consent)" in v for v in verdicts) and any("unknown (consent)" in v for v in verdicts)
    assert any("outside-date-window (selection)" in v for v in verdicts)
    assert report["totals"]["would_release"] == would

    table = site.gateway("audit")
    assert table.returncode == 0 and f"files: {would} would be released" in table.stdout

    run = site.gateway("run", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["release"]["instances"] == would
    datasets = site.open_all()
    assert len(datasets) == would == len({ds.SOPInstanceUID for ds in datasets})

    after = json.loads(site.gateway("audit", "--format", "json").stdout)  # released before: nothing more
    assert after["would_release"] == 0 == json.loads(site.gateway("run", "--dry-run", "--json").stdout)["would_release"]
    assert {i["why"]["stage"] for i in after["instances"]} >= {"released-before"}

    everything = json.loads(site.gateway("audit", "--all", site.export.root, "--format", "json").stdout)
    assert everything["totals"]["would_release"] > would  # --all: the engine alone, every file
    assert not [i for i in everything["instances"] if i["status"] == "not-released"]


@pytest.mark.tool("chromium", "chromium-browser")
def test_audit_html_page_renders_in_chromium(own_site: Site, cli, tmp_path: Path) -> None:
    site = own_site
    _partly_consented(site, cli)
    page = tmp_path / "audit.html"
    result = site.gateway("audit", "--format", "html", "--output", page)
    assert result.returncode == 0, result.stderr
    would = json.loads(site.gateway("run", "--dry-run", "--json").stdout)["would_release"]
    chromium = require_tool("chromium", "chromium-browser")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                          page.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body is not None and 'data-images-ok="yes"' in body.group(0) and "data-js-errors" not in body.group(0)
    assert f'<div class="card"><b>{would}</b>would be released</div>' in dom.stdout
    studies = re.search(r'<table class="sortable studies">.*?</table>', dom.stdout, re.S)
    assert studies is not None
    assert "refused (consent)" in studies.group(0) and "localizer (selection)" in studies.group(0)
    assert re.search(r'<table class="sortable not-released">.*consent: unknown', dom.stdout, re.S)
