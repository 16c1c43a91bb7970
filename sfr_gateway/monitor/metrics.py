"""The Prometheus textfile, ``HOME/metrics/sfr_gateway.prom``, written after each run.

node_exporter's textfile collector (``--collector.textfile.directory``) reads every ``*.prom``
file of a folder at each scrape, so the file is replaced atomically (a hidden ``.tmp`` beside
it, fsynced, renamed): a scrape never sees half of it. Text exposition format 0.0.4: ``# HELP``
and ``# TYPE`` before each family, label values escaped. Counts, times and reasons only.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from .. import __version__
from ..home.fsutil import atomic_write_text
from .runs import SUCCESS

BATCH_STATES = ("packaging", "packaged", "failed", "acknowledged", "cancelled")
RUN_OUTCOMES = ("ok", "partial", "undelivered", "interrupted", "failed")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        when = dt.datetime.fromisoformat(ts)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


class _Families:
    """Metric families in order, each with its HELP, TYPE and samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, text: str, samples: list[tuple[dict[str, str], float]] | float | None) -> None:
        if samples is None:
            return
        if not isinstance(samples, list):
            samples = [({}, samples)]
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            label = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label}}} {_number(value)}" if label else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(data: dict[str, Any], run: dict[str, Any] | None) -> str:
    """The exposition text for the state ``data`` (``state.collect``) and this ``run``'s
    record (outcome, exit_code, ended_at, seconds, released, batches_sent, bytes_sent)."""
    m = _Families()
    m.add("sfr_gateway_info", "gauge", "The gateway's site and version (always 1).",
          [({"site": data.get("site_id", ""), "version": __version__}, 1)])
    if run is not None:
        outcome = run.get("outcome", "failed")
        m.add("sfr_gateway_last_run_timestamp_seconds", "gauge", "When the last run ended (Unix time).",
              _epoch(run.get("ended_at")))
        m.add("sfr_gateway_last_run_duration_seconds", "gauge", "How long the last run took.",
              float(run.get("seconds") or 0.0))
        m.add("sfr_gateway_last_run_exit_code", "gauge", "The exit code of the last run (README: Exit codes).",
              int(run.get("exit_code", 1)))
        m.add("sfr_gateway_last_run_success", "gauge", "1 if the last run went through (exit 0 or 19), else 0.",
              int(outcome in SUCCESS))
        m.add("sfr_gateway_last_run_outcome", "gauge", "The last run's outcome: 1 for it, 0 for the others.",
              [({"outcome": o}, int(o == outcome)) for o in RUN_OUTCOMES])
        m.add("sfr_gateway_last_run_instances_released", "gauge", "Instances the last run released.",
              int(run.get("released", 0)))
        m.add("sfr_gateway_last_run_batches_sent", "gauge", "Batches the last run delivered.",
              int(run.get("batches_sent", 0)))
        m.add("sfr_gateway_last_run_bytes_sent", "gauge", "Bytes the last run delivered.", int(run.get("bytes_sent", 0)))
    m.add("sfr_gateway_last_success_timestamp_seconds", "gauge",
          "When the last run that went through (exit 0 or 19) ended (Unix time).",
          _epoch(data.get("runs", {}).get("last_success")))
    batches = data.get("batches", {})
    m.add("sfr_gateway_batches", "gauge", "Batches by state.",
          [({"state": s}, int(batches.get(s, {}).get("batches", 0))) for s in sorted({*BATCH_STATES, *batches})])
    m.add("sfr_gateway_batch_bytes", "gauge", "Bytes of the batches in each state.",
          [({"state": s}, int(batches.get(s, {}).get("bytes", 0))) for s in sorted({*BATCH_STATES, *batches})])
    m.add("sfr_gateway_sent_bytes_total", "counter", "Bytes of every batch the destination acknowledged.",
          int(batches.get("acknowledged", {}).get("bytes", 0)))
    held = data.get("held_back", {})
    m.add("sfr_gateway_held_back", "gauge", "Studies and files held back now (quarantine list).",
          [({"kind": "studies"}, int(held.get("studies", 0))), ({"kind": "files"}, int(held.get("files", 0)))])
    m.add("sfr_gateway_quarantined_instances", "gauge", "Instances the de-identification engine refused.",
          int(held.get("quarantined", 0)))
    quarantine = data.get("quarantine", {})
    if quarantine:
        m.add("sfr_gateway_quarantined_instances_by_reason", "gauge", "Instances the engine refused, by reason.",
              [({"reason": reason}, int(entry["count"])) for reason, entry in quarantine.items()])
    unreadable = data.get("index", {}).get("unreadable", {})
    m.add("sfr_gateway_unreadable_files", "gauge", "Files of the exports the gateway cannot read, by reason.",
          [({"reason": r}, int(n)) for r, n in sorted(unreadable.items())] or [({"reason": "none"}, 0)])
    con = data.get("consent", {})
    eligible, releasable = int(con.get("eligible_studies", 0)), int(con.get("releasable_studies", 0))
    m.add("sfr_gateway_eligible_studies", "gauge", "Eligible studies in the index.", eligible)
    m.add("sfr_gateway_releasable_studies", "gauge", "Eligible studies whose consent lets them through today.",
          releasable)
    m.add("sfr_gateway_consent_coverage_ratio", "gauge", "Releasable / eligible studies (1 when none is eligible).",
          releasable / eligible if eligible else 1.0)
    wr = data.get("withdrawal_requests", {})
    m.add("sfr_gateway_withdrawal_requests", "gauge", "Withdrawal requests by delivery state.",
          [({"state": s}, int(wr.get(s, 0))) for s in ("pending", "sent", "acknowledged")])
    oldest = wr.get("oldest_pending_hours")
    m.add("sfr_gateway_withdrawal_oldest_pending_seconds", "gauge",
          "Age of the oldest withdrawal request not yet delivered (0 when none).",
          float(oldest) * 3600 if oldest is not None else 0)
    health = data.get("health", {})
    if health:
        m.add("sfr_gateway_health", "gauge", "The verdict of `status --check`: 0 OK, 1 WARNING, 2 CRITICAL.",
              int(health.get("code", 0)))
    return m.text()


def write(path: Path, text: str) -> None:
    """Replace ``path`` atomically; 0644, so that node_exporter (another user) can read it."""

    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write_text(path, text, mode=0o644)
