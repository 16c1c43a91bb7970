"""`status --check` answers a monitoring system (Nagios plugin: one line, exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN), and `status` itself no longer exits 0 over failed batches and errors.

Before issue 17 `status` exited 0 with failed batches and a recorded last error, and had no
`--check`: a cron or Nagios check could not see a site in trouble.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from monitor_fixtures import add_config, make_site, set_destination

from sfr_gateway.errors import NeedsAttention
from sfr_gateway.home.config import load_config
from sfr_gateway.monitor.state import collect as site_state

NAGIOS = re.compile(r"^SFR-GATEWAY (OK|WARNING|CRITICAL|UNKNOWN) - [^\n|]+( \| [^\n]+)?$")


def check(site) -> tuple[int, str]:
    proc = site.gateway("status", "--check")
    assert proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1, proc.stdout  # exactly one line
    line = proc.stdout.rstrip("\n")
    assert NAGIOS.match(line), line
    return proc.returncode, line


def test_a_healthy_site_is_ok_and_a_fresh_one_says_no_run_yet(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=31)
    code, line = check(site)
    assert code == 0 and line.startswith("SFR-GATEWAY OK - no run yet")
    assert site.gateway("run").returncode == 0
    code, line = check(site)
    assert code == 0 and line.startswith("SFR-GATEWAY OK - all well |")
    assert "failed_batches=0;1" in line and re.search(r"last_success_age=\d+s;93600;259200", line)
    plain = site.gateway("status")
    assert plain.returncode == 0 and plain.stdout.rstrip().endswith("SFR-GATEWAY OK - all well")
    assert "last run: " in plain.stdout and " ok (exit 0)" in plain.stdout


def test_undelivered_batches_are_a_warning_and_status_exits_20(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=32)
    set_destination(site.home, (tmp_path / "share-not-mounted").as_uri())
    assert site.gateway("run").returncode == 10
    code, line = check(site)
    assert code == 1 and line.startswith("SFR-GATEWAY WARNING - 1 batch not delivered (last error ")
    assert "share-not-mounted does not exist" in line and "failed_batches=1;1" in line
    plain = site.gateway("status")
    assert plain.returncode == NeedsAttention.exit_code == 20
    assert plain.stdout.rstrip().splitlines()[-1].startswith("SFR-GATEWAY WARNING - 1 batch not delivered")
    as_json = site.gateway("status", "--json")
    assert as_json.returncode == 20
    health = json.loads(as_json.stdout)["health"]
    assert health["state"] == "WARNING" and health["code"] == 1 and health["problems"][0]["level"] == "WARNING"
    # delivered by `upload` once the share is back: OK again (the undelivered run is over)
    (tmp_path / "share-not-mounted").mkdir()
    assert site.gateway("upload").returncode == 0
    code, line = check(site)
    assert code == 0 and line.startswith("SFR-GATEWAY OK - no run went through yet |"), line
    assert site.gateway("run").returncode == 0
    assert check(site)[0] == 0


def test_a_failed_run_is_critical(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=33)
    config = site.home / "config.toml"
    config.write_text(re.sub(r"(?m)^recipients = .*$", "recipients = []", config.read_text()))
    failed = site.gateway("run")
    assert failed.returncode not in (0, 10, 19)
    code, line = check(site)
    assert code == 2 and line.startswith(f"SFR-GATEWAY CRITICAL - last run failed (exit {failed.returncode}, ")
    assert "no central recipient" in line


def test_held_back_studies_are_a_warning(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=34)
    assert site.gateway("run", env={"SFR_GATEWAY_RAISE": "deidentify:/P0001/"}).returncode == 19
    code, line = check(site)
    assert code == 1 and "held back: 1 studies, 0 files (`sfr-gateway quarantine list`)" in line
    assert "held_back=1;1" in line


def test_too_long_without_a_successful_run_and_withdrawals_not_delivered(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=35)
    assert site.gateway("run").returncode == 0
    patient = site.export.patients[0]
    withdrawn = cli("--home", site.home, "consent", "withdraw", patient.patient_id, "--issuer", patient.issuer)
    assert withdrawn.exit_code == 0, withdrawn.stderr
    config = load_config(site.home)
    now = dt.datetime.now(dt.UTC)
    soon = site_state(config, now=now)["health"]
    assert soon["state"] == "OK" and "1 withdrawal request not delivered, the oldest for 0 h" in soon["notes"]
    later = site_state(config, now=now + dt.timedelta(hours=30))["health"]
    assert later["state"] == "WARNING"
    assert [p["text"] for p in later["problems"]] == [
        f"no successful run for 30 h (last: {site_state(config)['runs']['last_success']})",
        "1 withdrawal request not delivered, the oldest for 30 h"]
    much_later = site_state(config, now=now + dt.timedelta(hours=80))["health"]
    assert much_later["state"] == "CRITICAL" and [p["level"] for p in much_later["problems"]] == ["CRITICAL", "CRITICAL"]
    # thresholds are the site's
    add_config(site.home, "[monitoring]\nwarn_after_hours = 1\ncritical_after_hours = 2\n")
    assert site_state(load_config(site.home), now=now + dt.timedelta(hours=3))["health"]["state"] == "CRITICAL"


def test_a_home_that_cannot_be_read_is_unknown_or_critical(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=36)
    (site.home / "keys").chmod(0o755)
    code, line = check(site)
    assert code == 2 and line.startswith("SFR-GATEWAY CRITICAL - key files are readable by group or others")
    (site.home / "keys").chmod(0o700)
    (site.home / "config.toml").write_text("[site\n")
    code, line = check(site)
    assert code == 3 and line.startswith("SFR-GATEWAY UNKNOWN - config: cannot read")
