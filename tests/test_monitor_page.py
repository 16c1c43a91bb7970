"""The status page: one self-contained HTML file with the site's state, checked in headless
Chromium (its Content Security Policy would block any fetch), refreshed by `run` when asked.

Before issue 17 there was no status page (`status --format` did not exist).
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
from monitor_fixtures import add_config, burn_in_one_slice, make_site, planted_tokens, set_destination
from tool_fixtures import require_tool

from sfr_gateway.monitor import page

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("chromium", "chromium-browser")
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def busy_site(tmp_path: Path, cli):
    """A site with something in every section: a held-back study, a refused instance, a
    withdrawal request waiting, a failed delivery, a refused consent."""
    site = make_site(tmp_path, cli, patients=4, slices=2, seed=71)
    refused = burn_in_one_slice(site)
    last = site.export.patients[3]
    cli("--home", site.home, "consent", "set", last.patient_id, "refused", "--issuer", last.issuer, "--date", "2026-02-01")
    assert site.gateway("run", env={"SFR_GATEWAY_RAISE": "deidentify:/P0002/"}).returncode == 19
    first = site.export.patients[0]
    assert cli("--home", site.home, "consent", "withdraw", first.patient_id, "--issuer", first.issuer).exit_code == 0
    set_destination(site.home, (tmp_path / "share").as_uri())
    assert site.gateway("run", env={"SFR_GATEWAY_RAISE": "deidentify:/P0002/"}).returncode == 10
    site.refused = refused  # type: ignore[attr-defined]
    return site


def test_the_page_is_self_contained_and_shows_the_site(busy_site, tmp_path: Path) -> None:
    site = busy_site
    out = tmp_path / "status.html"
    proc = site.gateway("status", "--format", "html", "--output", out)
    assert proc.returncode == 20 and proc.stdout == f"status page written to {out}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    text = out.read_text(encoding="utf-8")
    # self-contained: no URL to fetch, no external stylesheet, script, font or frame
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["'](?!data:|#)""", text, re.I)
    assert "url(" not in text and "@import" not in text and "<script" not in text and "<link" not in text
    assert "default-src 'none'" in text
    status = json.loads(site.gateway("status", "--json").stdout)
    held = status["held_back"]["items"][0]
    request = status["withdrawal_requests"]["pending_list"][0]
    for needle in ("Last runs", "undelivered", "partial", "Batches by state", "acknowledged", "failed",
                   "Destination", "share does not exist", "Consent coverage", status["consent"]["summary"],
                   "Withdrawal requests not yet delivered", request["pseudonym"], "Held back", held["pseudonym"],
                   "engine-error", "burned-in-suspected", str(site.refused), 'data-health="WARNING"'):
        assert needle in text, needle
    for token in planted_tokens(site):
        assert token not in text, token
    to_stdout = site.gateway("status", "--format", "html")
    assert to_stdout.returncode == 20 and to_stdout.stdout.startswith("<!DOCTYPE html>")

    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", out.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<body data-health="WARNING">', dom.stdout)
    sections = re.findall(r'<table[^>]*data-section="([a-z-]+)"', dom.stdout)
    assert {"runs", "batches", "destination", "consent", "withdrawals", "held-back"} <= set(sections)
    assert 'data-reason="burned-in-suspected" open' in dom.stdout
    assert "Refused to load" not in dom.stderr and "Content Security Policy" not in dom.stderr  # nothing was fetched
    shot = tmp_path / "status.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", out.resolve().as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_refreshes_the_page_when_asked(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=72)
    add_config(site.home, '[monitoring]\nstatus_page = "www/status.html"\n')
    assert site.gateway("run").returncode == 0
    first = (site.home / "www" / "status.html").read_text()
    assert 'data-health="OK"' in first and run_outcomes(first) == ["ok"]
    set_destination(site.home, (tmp_path / "gone").as_uri())
    cli("--home", site.home, "consent", "set", "LATECOMER", "consented", "--date", "2026-02-01")
    assert site.gateway("run").returncode == 0  # nothing to send: the missing share is not used
    assert run_outcomes((site.home / "www" / "status.html").read_text()) == ["ok", "ok"]


def run_outcomes(html: str) -> list[str]:
    """The outcome column of the page's "Last runs" table."""
    runs = re.search(r'data-section="runs">(.*?)</table>', html, re.S)
    assert runs is not None
    return re.findall(r'<tr><td>[^<]*</td><td><span class="badge [a-z]+">([a-z]+)</span>', runs.group(1))


def test_every_value_is_escaped() -> None:
    nasty = '<img src="http://evil/x"><script>alert(1)</script>'
    html = page.render({"site_id": nasty, "destination": nasty, "health": {"state": "OK", "problems": [], "notes": [nasty]},
                        "quarantine": {nasty: {"count": 1, "paths": [nasty]}},
                        "unreadable_files": [{"path": nasty, "reason": "not-dicom"}], "index": {"unreadable": {"x": 1}}})
    assert "<script>" not in html and '<img src="http' not in html and "&lt;script&gt;" in html
