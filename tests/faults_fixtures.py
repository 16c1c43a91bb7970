"""Fixtures of the fault campaign: snapshots of sources, ledger checks, helpers."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """SHA-256, mtime (ns) and mode of every file under ``root``: originals must never change."""
    out = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        st = path.stat()
        out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return out


def integrity_ok(db: Path) -> bool:
    """``PRAGMA integrity_check`` and foreign keys of the ledger (read-only connection)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok" and \
            not conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()


def ledger_rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def visible_files(folder: Path) -> list[Path]:
    """What a receiver watching ``folder`` would pick up: not hidden, not ``.part``."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".part"))


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
