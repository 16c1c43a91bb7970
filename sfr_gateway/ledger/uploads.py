"""SQL for upload progress: the ledger side of ``transport.UploadState``.

Every ``save`` commits before returning (WAL), so a process killed mid-upload leaves the
upload URL and the last confirmed offset for the next run; ``note_sent`` commits how far the
bytes were sent before they leave, so a server's claim beyond that is recognised as false.
"""

from __future__ import annotations

from typing import Any

from ..transport.base import DATA, PARTS, Receipt, redact_url
from .db import Ledger, utcnow


class SqliteUploadState:
    """``transport.UploadState`` over the ledger, scoped to one destination URL."""

    def __init__(self, ledger: Ledger, destination: str) -> None:
        self.ledger = ledger
        self.destination = redact_url(destination)

    def load(self, batch_id: str, part: str = DATA) -> tuple[str, int] | None:
        row = self.ledger.conn.execute(
            "SELECT url, upload_offset FROM uploads WHERE destination = ? AND batch_id = ? AND part = ?",
            (self.destination, batch_id, _part(part)),
        ).fetchone()
        return (str(row[0]), int(row[1])) if row else None

    def save(self, batch_id: str, url: str, offset: int, part: str = DATA) -> None:
        now = utcnow()
        with self.ledger.transaction() as conn:
            conn.execute(
                "INSERT INTO uploads (destination, batch_id, part, url, upload_offset, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (destination, batch_id, part) DO UPDATE SET "
                "url = excluded.url, upload_offset = excluded.upload_offset, updated_at = excluded.updated_at, "
                "sent_upto = CASE WHEN uploads.url = excluded.url THEN uploads.sent_upto ELSE NULL END "
                "WHERE uploads.state = 'in_progress'",
                (self.destination, batch_id, _part(part), url, int(offset), now, now),
            )

    def note_sent(self, batch_id: str, upto: int, part: str = DATA) -> None:
        """Record, before the bytes leave, that everything below ``upto`` is being sent."""
        with self.ledger.transaction() as conn:
            conn.execute(
                "UPDATE uploads SET sent_upto = MAX(COALESCE(sent_upto, 0), ?), updated_at = ? "
                "WHERE destination = ? AND batch_id = ? AND part = ? AND state = 'in_progress'",
                (int(upto), utcnow(), self.destination, batch_id, _part(part)),
            )

    def sent(self, batch_id: str, part: str = DATA) -> int:
        """How far this gateway has sent the part's current upload (0 when never created)."""
        row = self.ledger.conn.execute(
            "SELECT MAX(COALESCE(sent_upto, 0), upload_offset) FROM uploads "
            "WHERE destination = ? AND batch_id = ? AND part = ?",
            (self.destination, batch_id, _part(part)),
        ).fetchone()
        return int(row[0]) if row else 0

    def mark_done(self, batch_id: str, receipt: Receipt, part: str = DATA) -> None:
        now = utcnow()
        url = receipt.location if part == DATA else receipt.signature_location
        size = receipt.size if part == DATA else None
        with self.ledger.transaction() as conn:
            conn.execute(
                "INSERT INTO uploads (destination, batch_id, part, url, upload_offset, state, receipt, "
                "created_at, updated_at, completed_at) VALUES (?, ?, ?, ?, ?, 'done', ?, ?, ?, ?) "
                "ON CONFLICT (destination, batch_id, part) DO UPDATE SET state = 'done', "
                "upload_offset = COALESCE(?, uploads.upload_offset), receipt = excluded.receipt, "
                "updated_at = excluded.updated_at, completed_at = excluded.completed_at",
                (self.destination, batch_id, _part(part), url, size or 0, receipt.to_json(), now, now, now, size),
            )

    def receipt(self, batch_id: str, part: str = DATA) -> Receipt | None:
        row = self.ledger.conn.execute(
            "SELECT receipt FROM uploads WHERE destination = ? AND batch_id = ? AND part = ? AND state = 'done'",
            (self.destination, batch_id, _part(part)),
        ).fetchone()
        return Receipt.from_json(row[0]) if row and row[0] else None


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


def _part(part: str) -> str:
    if part not in PARTS:
        raise ValueError(f"unknown upload part {part!r}")
    return part
