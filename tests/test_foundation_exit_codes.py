"""Exit codes of the errors that belong to the foundation: usage, ledger, internal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sfr_gateway.errors import LedgerError


def test_usage_error_is_2(cli, home: Path) -> None:
    result = cli("--home", home, "scan", "--no-such-option")
    assert result.exit_code == 2
    assert "no such option" in result.stderr.lower()


def test_ledger_newer_than_the_gateway_is_6(cli, home: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(home / "state.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    result = cli("--home", home, "scan", tmp_path)
    assert result.exit_code == LedgerError.exit_code == 6
    assert "upgrade sfr-gateway" in result.stderr


def test_a_corrupt_ledger_is_6_and_says_which_file(cli, home: Path, tmp_path: Path) -> None:
    db = home / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    result = cli("--home", home, "scan", tmp_path)
    assert result.exit_code == 6
    assert str(db) in result.stderr
