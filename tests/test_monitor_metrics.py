"""After each run, HOME/metrics/sfr_gateway.prom: valid Prometheus text, written atomically,
counting what `status --json` says (runs, batches by state, bytes sent, quarantine, consent).

Before issue 17 no file was written.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from monitor_fixtures import add_config, burn_in_one_slice, make_site, parse_prometheus, set_destination, value

from sfr_gateway import __version__
from sfr_gateway.monitor import metrics


def prom(site) -> dict[str, dict]:
    path = site.home / "metrics" / "sfr_gateway.prom"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert [p.name for p in path.parent.iterdir()] == ["sfr_gateway.prom"]  # no temp file left
    return parse_prometheus(path.read_text(encoding="utf-8"))


def test_the_metrics_file_counts_what_status_says(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=3, slices=3, seed=41)
    burn_in_one_slice(site)  # one instance refused by the engine
    cli("--home", site.home, "consent", "set", site.export.patients[2].patient_id, "refused",
        "--issuer", site.export.patients[2].issuer, "--date", "2026-02-01")
    assert not (site.home / "metrics").exists()
    proc = site.gateway("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    status = json.loads(site.gateway("status", "--json").stdout)
    m = prom(site)
    assert value(m, "sfr_gateway_info", site="TEST01", version=__version__) == 1
    assert value(m, "sfr_gateway_last_run_success") == 1 and value(m, "sfr_gateway_last_run_exit_code") == 0
    assert value(m, "sfr_gateway_last_run_outcome", outcome="ok") == 1
    assert value(m, "sfr_gateway_last_run_outcome", outcome="failed") == 0
    assert value(m, "sfr_gateway_last_run_instances_released") == report["release"]["instances"] == 5
    assert value(m, "sfr_gateway_last_run_batches_sent") == report["upload"]["acknowledged"] == 2
    assert value(m, "sfr_gateway_last_run_bytes_sent") == report["upload"]["bytes_sent"] > 0
    acknowledged = status["batches"]["acknowledged"]
    assert value(m, "sfr_gateway_batches", state="acknowledged") == acknowledged["batches"] == 2
    assert value(m, "sfr_gateway_batches", state="failed") == 0
    assert value(m, "sfr_gateway_sent_bytes_total") == acknowledged["bytes"]
    assert m["sfr_gateway_sent_bytes_total"]["type"] == "counter"
    assert value(m, "sfr_gateway_quarantined_instances") == status["held_back"]["quarantined"] == 1
    assert value(m, "sfr_gateway_quarantined_instances_by_reason", reason="burned-in-suspected") == 1
    assert value(m, "sfr_gateway_eligible_studies") == status["consent"]["eligible_studies"] == 3
    assert value(m, "sfr_gateway_releasable_studies") == status["consent"]["releasable_studies"] == 2
    assert value(m, "sfr_gateway_consent_coverage_ratio") == 2 / 3
    assert value(m, "sfr_gateway_health") == 0
    ended = value(m, "sfr_gateway_last_run_timestamp_seconds")
    assert ended == value(m, "sfr_gateway_last_success_timestamp_seconds") > 1.7e9


def test_a_quiet_run_updates_the_file_where_the_site_wants_it(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=42)
    assert site.gateway("run").returncode == 0
    first = prom(site)
    add_config(site.home, f'[monitoring]\nmetrics_file = "{tmp_path / "textfile" / "gw.prom"}"\n')
    assert site.gateway("run").returncode == 0  # nothing new: still a run, still measured
    moved = parse_prometheus((tmp_path / "textfile" / "gw.prom").read_text())
    assert value(moved, "sfr_gateway_last_run_batches_sent") == 0
    assert value(moved, "sfr_gateway_last_run_instances_released") == 0
    assert value(moved, "sfr_gateway_batches", state="acknowledged") == 2
    assert value(moved, "sfr_gateway_last_success_timestamp_seconds") >= value(
        first, "sfr_gateway_last_success_timestamp_seconds")


def test_undelivered_and_disabled(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=43)
    set_destination(site.home, (tmp_path / "gone").as_uri())
    assert site.gateway("run").returncode == 10
    m = prom(site)
    assert value(m, "sfr_gateway_last_run_exit_code") == 10 and value(m, "sfr_gateway_last_run_success") == 0
    assert value(m, "sfr_gateway_last_run_outcome", outcome="undelivered") == 1
    assert value(m, "sfr_gateway_batches", state="failed") == 1 and value(m, "sfr_gateway_health") == 1
    assert "sfr_gateway_last_success_timestamp_seconds" not in m  # never went through
    # a dry run is not a run: the file stays as it was
    before = (site.home / "metrics" / "sfr_gateway.prom").read_bytes()
    assert site.gateway("run", "--dry-run").returncode == 0
    assert (site.home / "metrics" / "sfr_gateway.prom").read_bytes() == before
    add_config(site.home, "[monitoring]\nmetrics = false\n")
    (site.home / "metrics" / "sfr_gateway.prom").unlink()
    site.gateway("run")
    assert not (site.home / "metrics" / "sfr_gateway.prom").exists()


def test_label_values_are_escaped() -> None:
    text = metrics.render({"site_id": 'a"b\\c\nd', "quarantine": {'odd "reason"\n': {"count": 2, "paths": []}}}, None)
    families = parse_prometheus(text)
    assert value(families, "sfr_gateway_quarantined_instances_by_reason", reason='odd \\"reason\\"\\n') == 2
    assert 'site="a\\"b\\\\c\\nd"' in text
