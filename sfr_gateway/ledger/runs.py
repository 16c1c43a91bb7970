"""The runs' outcomes in the audit trail (``events``: command ``run``, action ``outcome``) and
the last upload pass, for ``status``, its verdict, the metrics and the status page."""

from __future__ import annotations

import json
from typing import Any

from .db import Ledger


def history(ledger: Ledger, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` runs, newest first: ended at (UTC), outcome, and what was recorded."""
    rows = ledger.conn.execute(
        "SELECT ts, result, detail FROM events WHERE command = 'run' AND action = 'outcome' ORDER BY id DESC LIMIT ?",
        (limit,)).fetchall()
    return [{"ended_at": ts, "outcome": result, **json.loads(detail)} for ts, result, detail in rows]


def last_with(ledger: Ledger, outcomes: tuple[str, ...]) -> str | None:
    """When the last run with one of ``outcomes`` ended, UTC ISO; None if none did."""
    marks = ",".join("?" * len(outcomes))
    row = ledger.conn.execute(
        f"SELECT ts FROM events WHERE command = 'run' AND action = 'outcome' AND result IN ({marks}) "
        "ORDER BY id DESC LIMIT 1", outcomes).fetchone()
    return row[0] if row else None


def first_event_at(ledger: Ledger) -> str | None:
    """When this ledger got its first event (``init``)."""
    row = ledger.conn.execute("SELECT ts FROM events ORDER BY id LIMIT 1").fetchone()
    return row[0] if row else None


def last_upload(ledger: Ledger) -> dict[str, str] | None:
    """The last upload pass that had something to send: when, and ``ok`` or ``partial``."""
    row = ledger.conn.execute(
        "SELECT ts, result FROM events WHERE command = 'upload' AND action = 'upload' ORDER BY id DESC LIMIT 1").fetchone()
    return {"at": row[0], "result": row[1]} if row else None
