"""SQL for upload progress, the rows behind ``transport.state.SqliteUploadState``.

Every ``save_progress`` commits before returning (WAL), so a process killed mid-upload leaves the
upload URL and the last confirmed offset for the next run; ``note_sent`` commits how far the
bytes were sent before they leave, so a server's claim beyond that is recognised as false.
Plain values only (destination already redacted, part a word, receipt as JSON): the transport
types stay in ``transport/``.
"""

from __future__ import annotations

from typing import Any

from .db import Ledger, utcnow


def load_progress(ledger: Ledger, destination: str, batch_id: str, part: str) -> tuple[str, int] | None:
    """The upload URL and last confirmed offset of this part, or None if never created."""
    row = ledger.conn.execute(
        "SELECT url, upload_offset FROM uploads WHERE destination = ? AND batch_id = ? AND part = ?",
        (destination, batch_id, part),
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def save_progress(ledger: Ledger, destination: str, batch_id: str, part: str, url: str, offset: int) -> None:
    """Record the part's upload URL and the offset the server confirmed (committed on return)."""
    now = utcnow()
    with ledger.transaction() as conn:
        conn.execute(
            "INSERT INTO uploads (destination, batch_id, part, url, upload_offset, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (destination, batch_id, part) DO UPDATE SET "
            "url = excluded.url, upload_offset = excluded.upload_offset, updated_at = excluded.updated_at, "
            "sent_upto = CASE WHEN uploads.url = excluded.url THEN uploads.sent_upto ELSE NULL END "
            "WHERE uploads.state = 'in_progress'",
            (destination, batch_id, part, url, int(offset), now, now),
        )


def note_sent(ledger: Ledger, destination: str, batch_id: str, part: str, upto: int) -> None:
    """Record, before the bytes leave, that everything below ``upto`` is being sent."""
    with ledger.transaction() as conn:
        conn.execute(
            "UPDATE uploads SET sent_upto = MAX(COALESCE(sent_upto, 0), ?), updated_at = ? "
            "WHERE destination = ? AND batch_id = ? AND part = ? AND state = 'in_progress'",
            (int(upto), utcnow(), destination, batch_id, part),
        )


def sent_upto(ledger: Ledger, destination: str, batch_id: str, part: str) -> int:
    """How far this gateway has sent the part's current upload (0 when never created)."""
    row = ledger.conn.execute(
        "SELECT MAX(COALESCE(sent_upto, 0), upload_offset) FROM uploads "
        "WHERE destination = ? AND batch_id = ? AND part = ?",
        (destination, batch_id, part),
    ).fetchone()
    return int(row[0]) if row else 0


def mark_done(ledger: Ledger, destination: str, batch_id: str, part: str, url: str, size: int | None,
              receipt_json: str) -> None:
    """The part is complete at the destination: its receipt (JSON) kept, the row 'done'."""
    now = utcnow()
    with ledger.transaction() as conn:
        conn.execute(
            "INSERT INTO uploads (destination, batch_id, part, url, upload_offset, state, receipt, "
            "created_at, updated_at, completed_at) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?) "
            "ON CONFLICT (destination, batch_id, part) DO UPDATE SET state = 'done', "
            "upload_offset = COALESCE(?, uploads.upload_offset), receipt = excluded.receipt, "
            "updated_at = excluded.updated_at, completed_at = excluded.completed_at",
            (destination, batch_id, part, url, size or 0, receipt_json, now, now, now, size),
        )


def receipt_json(ledger: Ledger, destination: str, batch_id: str, part: str) -> str | None:
    """The receipt (JSON) of a completed part, or None."""
    row = ledger.conn.execute(
        "SELECT receipt FROM uploads WHERE destination = ? AND batch_id = ? AND part = ? AND state = 'done'",
        (destination, batch_id, part),
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def list_uploads(ledger: Ledger, batch_id: str | None = None) -> list[dict[str, Any]]:
    """Every upload row (for ``status``), oldest first; optionally of one batch."""
    sql = ("SELECT destination, batch_id, part, url, upload_offset, state, created_at, updated_at, completed_at "
           "FROM uploads")
    args: tuple[Any, ...] = ()
    if batch_id is not None:
        sql += " WHERE batch_id = ?"
        args = (batch_id,)
    cols = ("destination", "batch_id", "part", "url", "offset", "state", "created_at", "updated_at", "completed_at")
    return [dict(zip(cols, row, strict=True)) for row in ledger.conn.execute(sql + " ORDER BY created_at, batch_id, part", args)]
