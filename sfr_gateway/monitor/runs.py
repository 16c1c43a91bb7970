"""Each run's outcome, kept in the ledger's audit trail (``events``: command ``run``, action
``outcome``), so that ``status``, ``status --check``, the metrics and the status page know when
the last run ended, how, and when the last one went through.

A run's *outcome* comes from its exit code: ``ok`` (0), ``partial`` (19: some studies held
back, everything else released and sent), ``undelivered`` (10: the destination could not be
reached; the batches wait), ``interrupted`` (130, Ctrl-C), ``failed`` (any other code: the run
stopped). A run that found the lock held (7) is not a run: nothing is recorded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..ledger import Ledger
from ..ledger import runs as sql

SUCCESS = ("ok", "partial")  # the pipeline went through: what "last successful run" means


def outcome_of(exit_code: int) -> str:
    if exit_code == 0:
        return "ok"
    if exit_code == 19:
        return "partial"
    if exit_code == 10:
        return "undelivered"
    if exit_code == 130:
        return "interrupted"
    return "failed"


def record_outcome(ledger: Ledger, outcome: str, detail: dict[str, Any]) -> None:
    """Append the outcome of a run (``detail``: exit code, times, counts, the error message of
    the gateway's own errors: no patient values)."""
    ledger.record_event("run", "outcome", outcome, detail)


def history(ledger: Ledger, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` runs, newest first: ended at (UTC), outcome, and what was recorded."""
    return sql.history(ledger, limit)


def last_success(ledger: Ledger) -> str | None:
    """When the last run that went through (ok or partial) ended, UTC ISO; None if none did."""
    return sql.last_with(ledger, SUCCESS)


def set_up_at(ledger: Ledger) -> str | None:
    """When this HOME's ledger got its first event (``init``): the reference for "no run yet"."""
    return sql.first_event_at(ledger)


def hours_since(ts: str | None, now: dt.datetime) -> float | None:
    """Hours from an ISO timestamp (UTC when it carries no offset) to ``now``; None for None."""
    if not ts:
        return None
    try:
        then = dt.datetime.fromisoformat(ts)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return max(0.0, (now - then).total_seconds() / 3600)
