"""Open the ledger (SQLite, WAL), apply numbered migrations, record events.

Migrations are ``migrations/NNNN_name.sql`` files packaged with the code, applied in
order inside one transaction each; ``PRAGMA user_version`` holds the last one applied.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import LedgerError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def utcnow() -> str:
    """Now, as an ISO-8601 UTC timestamp with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def migrations() -> list[tuple[int, str, str]]:
    """The packaged migrations as (number, file name, SQL), in order."""
    found = []
    for entry in resources.files("sfr_gateway.ledger").joinpath("migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise LedgerError(f"ledger migrations are not numbered 1..N without gaps: {numbers}")
    return found


class Ledger:
    """One connection to state.db. Domain modules take a Ledger and own their SQL."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (even KeyboardInterrupt)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot start a transaction: {exc}") from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def record_event(self, command: str, action: str, result: str, detail: dict[str, Any] | None = None) -> None:
        """Append one row to the audit trail. ``detail`` must hold no patient values."""
        with self.transaction() as conn:
            insert_event(conn, command, action, result, detail)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state (WAL snapshot).

        Inside an already open transaction it simply yields the connection.
        """
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN DEFERRED")
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot start a read transaction: {exc}") from None
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent events, newest first."""
        rows = self.conn.execute(
            "SELECT id, ts, actor, command, action, result, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            {"id": r[0], "ts": r[1], "actor": r[2], "command": r[3], "action": r[4], "result": r[5],
             "detail": json.loads(r[6])}
            for r in rows
        ]


def insert_event(
    conn: sqlite3.Connection, command: str, action: str, result: str, detail: dict[str, Any] | None = None
) -> None:
    """Append one event inside the caller's open transaction (so it commits with the change)."""
    conn.execute(
        "INSERT INTO events (ts, actor, host_pid, command, action, result, detail) VALUES (?,?,?,?,?,?,?)",
        (utcnow(), _actor(), os.getpid(), command, action, result,
         json.dumps(detail or {}, sort_keys=True, default=str)),
    )


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def open_ledger(path: Path) -> Ledger:
    """Open (creating if needed) and migrate the ledger at ``path``; the file is 0600."""
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc}") from None
    ledger = Ledger(conn, path)
    _migrate(ledger)
    return ledger


def scratch_copy(path: Path) -> Ledger:
    """An in-memory copy of the ledger at ``path`` (an empty, migrated one if there is none):
    a command that must reason like a run (``audit``: scan, select, gate) works on it and leaves
    the HOME as it was. The copy lives in this process's memory only: it holds what state.db
    holds (local patient IDs), so it is never written to a temporary file."""
    path = Path(path)
    try:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if path.exists():
            # not mode=ro: a read-only connection leaves empty -wal and -shm files behind; this
            # one, the last to close, removes them (and writes nothing: we only read)
            source = sqlite3.connect(path, timeout=30)
            try:
                source.backup(conn)
            finally:
                source.close()
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    ledger = Ledger(conn, path)
    _migrate(ledger)
    return ledger


def _migrate(ledger: Ledger) -> None:
    current = ledger.schema_version
    available = migrations()
    if current > len(available):
        raise LedgerError(
            f"ledger {ledger.path} has schema version {current}, newer than this gateway knows "
            f"({len(available)}): upgrade sfr-gateway"
        )
    for number, name, sql in available[current:]:
        try:
            with ledger.transaction() as conn:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number:d}")
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger migration {name} failed: {exc}") from None


def _statements(sql: str) -> list[str]:
    """Split a migration into complete statements.

    Lines are accumulated until ``sqlite3.complete_statement`` says the text forms whole
    statements, so semicolons inside ``CREATE TRIGGER ... BEGIN ...; END;``, string literals
    and comments do not split a statement. Comment-only chunks are dropped.
    """
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if not _only_comments(buf):
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not _only_comments(buf):
        raise LedgerError("ledger migration ends with an incomplete statement (missing ';'?)")
    return out


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())
