"""The SQLite ledger: every stage records what it did here; all SQL lives in this package."""

from .db import Ledger, open_ledger

__all__ = ["Ledger", "open_ledger"]
