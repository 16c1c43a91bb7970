"""``UploadState`` over the ledger, scoped to one destination URL: what lets a killed upload
resume where the server confirmed it, and lets a false claim be recognised (the SQL is in
``ledger.uploads``).
"""

from __future__ import annotations

from ..ledger import Ledger
from ..ledger import uploads as sql
from .base import DATA, PARTS, Receipt, redact_url


class SqliteUploadState:
    """``transport.UploadState`` over the ledger, scoped to one destination URL (kept redacted)."""

    def __init__(self, ledger: Ledger, destination: str) -> None:
        self.ledger = ledger
        self.destination = redact_url(destination)

    def load(self, batch_id: str, part: str = DATA) -> tuple[str, int] | None:
        return sql.load_progress(self.ledger, self.destination, batch_id, _part(part))

    def save(self, batch_id: str, url: str, offset: int, part: str = DATA) -> None:
        sql.save_progress(self.ledger, self.destination, batch_id, _part(part), url, offset)

    def note_sent(self, batch_id: str, upto: int, part: str = DATA) -> None:
        """Record, before the bytes leave, that everything below ``upto`` is being sent."""
        sql.note_sent(self.ledger, self.destination, batch_id, _part(part), upto)

    def sent(self, batch_id: str, part: str = DATA) -> int:
        """How far this gateway has sent the part's current upload (0 when never created)."""
        return sql.sent_upto(self.ledger, self.destination, batch_id, _part(part))

    def mark_done(self, batch_id: str, receipt: Receipt, part: str = DATA) -> None:
        url = receipt.location if part == DATA else receipt.signature_location
        size = receipt.size if part == DATA else None
        sql.mark_done(self.ledger, self.destination, batch_id, _part(part), url, size, receipt.to_json())

    def receipt(self, batch_id: str, part: str = DATA) -> Receipt | None:
        text = sql.receipt_json(self.ledger, self.destination, batch_id, _part(part))
        return Receipt.from_json(text) if text else None


def _part(part: str) -> str:
    if part not in PARTS:
        raise ValueError(f"unknown upload part {part!r}")
    return part
