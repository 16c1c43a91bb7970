"""The verdict on a site's state: OK, WARNING or CRITICAL, in one line, as a Nagios plugin says it.

What counts (thresholds in ``[monitoring]``; the README's Monitoring section lists the same):

CRITICAL, someone must act now:
- the last run failed (its exit code was neither 0, 10 nor 19: keys, disk, ledger, credentials...);
- no run went through (ok or partial) for ``critical_after_hours`` (default 72), or, never
  one, that long since the HOME was set up;
- a withdrawal request not delivered for ``withdrawal_critical_hours`` (72): the central host
  must delete that patient's data.

WARNING, someone should look today:
- batches whose delivery failed (the last error named), or the last run could not deliver
  and something it left still waits;
- no run went through for ``warn_after_hours`` (26: a nightly run and some slack);
- a withdrawal request not delivered for ``withdrawal_warn_hours`` (24);
- studies or files held back (``quarantine list`` says why and what to do);
- with ``quarantine_is_warning = true``, files the engine refused for good.

Counted in the line but OK by themselves: files the engine refused (burned-in suspicion,
corrupt: they stay refused by design), unreadable files in the exports, pending batches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from . import runs
from .settings import MonitoringSettings

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SERVICE = "SFR-GATEWAY"


@dataclass
class Health:
    """Problems found (level, text), worst first; the counts for the performance data."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    perfdata: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return max((level for level, _ in self.problems), default=OK)

    @property
    def state(self) -> str:
        return NAMES[self.code]

    def add(self, level: int, text: str) -> None:
        self.problems.append((level, " ".join(text.split())))  # one line, whatever a message held

    def line(self) -> str:
        """``SFR-GATEWAY WARNING - 2 batches not delivered (...); ... | failed_batches=2 ...``"""
        ordered = [text for _, text in sorted(self.problems, key=lambda p: -p[0])]
        text = "; ".join(ordered + self.notes) or "all well"
        return f"{SERVICE} {self.state} - {text}" + (f" | {' '.join(self.perfdata)}" if self.perfdata else "")

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "code": self.code, "line": self.line(),
                "problems": [{"level": NAMES[level], "text": text}
                             for level, text in sorted(self.problems, key=lambda p: -p[0])],
                "notes": self.notes}


def _age(hours: float) -> str:
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"


def judge(data: dict[str, Any], settings: MonitoringSettings, now: dt.datetime) -> Health:
    """The verdict on ``data`` (``state.collect``) at ``now``."""
    health = Health()
    _runs(health, data, settings, now)
    batches = data.get("batches", {})
    failed = batches.get("failed", {}).get("batches", 0)
    pending = batches.get("packaged", {}).get("batches", 0) + failed
    if failed:
        err = data.get("last_error") or {}
        health.add(WARNING, f"{failed} batch{'es' if failed != 1 else ''} not delivered"
                   + (f" (last error {err.get('at')}: {err.get('error')})" if err else ""))
    _withdrawals(health, data, settings)
    held = data.get("held_back", {})
    if held.get("studies") or held.get("files"):
        health.add(WARNING, f"held back: {held.get('studies', 0)} studies, {held.get('files', 0)} files "
                            "(`sfr-gateway quarantine list`)")
    refused = int(held.get("quarantined", 0))
    if refused:
        text = f"{refused} instances refused by the engine (`sfr-gateway quarantine list`)"
        if settings.quarantine_is_warning:
            health.add(WARNING, text)
        else:
            health.notes.append(text)
    unreadable = sum(data.get("index", {}).get("unreadable", {}).values())
    if unreadable:
        health.notes.append(f"{unreadable} unreadable files in the exports")
    last_ok = data.get("runs", {}).get("last_success")
    age = runs.hours_since(last_ok, now)
    health.perfdata = [
        f"failed_batches={failed};1", f"pending_batches={pending}",
        f"held_back={int(held.get('studies', 0)) + int(held.get('files', 0))};1", f"quarantined={refused}",
        f"unreadable={unreadable}", f"withdrawals_pending={data.get('withdrawal_requests', {}).get('pending', 0)}",
    ] + ([f"last_success_age={int((age or 0) * 3600)}s;{settings.warn_after_hours * 3600};"
          f"{settings.critical_after_hours * 3600}"] if age is not None else [])
    return health


def _runs(health: Health, data: dict[str, Any], settings: MonitoringSettings, now: dt.datetime) -> None:
    info = data.get("runs", {})
    last = (info.get("last") or [None])[0]
    if last and last.get("outcome") == "failed":
        health.add(CRITICAL, f"last run failed (exit {last.get('exit_code')}, {last.get('ended_at')})"
                   + (f": {last['error']}" if last.get("error") else ""))
    elif last and last.get("outcome") == "undelivered" and not data.get("batches", {}).get("failed") and _waiting(data):
        health.add(WARNING, f"last run could not deliver ({last.get('ended_at')})"
                   + (f": {last['error']}" if last.get("error") else ""))
    last_ok = info.get("last_success")
    since = last_ok or info.get("set_up_at")
    hours = runs.hours_since(since, now)
    if hours is None:
        return
    what = f"no successful run for {_age(hours)} (last: {last_ok})" if last_ok else \
        f"no successful run since the set-up {_age(hours)} ago"
    if hours >= settings.critical_after_hours:
        health.add(CRITICAL, what)
    elif hours >= settings.warn_after_hours:
        health.add(WARNING, what)
    elif not last_ok:
        health.notes.append("no run went through yet" if last else "no run yet")


def _waiting(data: dict[str, Any]) -> bool:
    """Something an undelivered run left is still to deliver (once `upload` has delivered it
    all, that run's failure is over)."""
    batches = data.get("batches", {})
    return bool(batches.get("packaged", {}).get("batches", 0) or data.get("withdrawal_requests", {}).get("pending", 0))


def _withdrawals(health: Health, data: dict[str, Any], settings: MonitoringSettings) -> None:
    requests = data.get("withdrawal_requests", {})
    oldest = requests.get("oldest_pending_hours")
    if oldest is None:
        return
    n = requests.get("pending", 0)
    text = f"{n} withdrawal request{'s' if n != 1 else ''} not delivered, the oldest for {_age(oldest)}"
    if oldest >= settings.withdrawal_critical_hours:
        health.add(CRITICAL, text)
    elif oldest >= settings.withdrawal_warn_hours:
        health.add(WARNING, text)
    else:
        health.notes.append(text)
