"""SQL for the index of source instances (written by scan, read by selection and the pipeline)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..dicomio import HeaderFacts
from .db import Ledger, utcnow

_FACT_COLUMNS = tuple(HeaderFacts.__dataclass_fields__)


def start_scan(ledger: Ledger, roots: Sequence[bytes]) -> int:
    with ledger.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO scans (started_at, roots) VALUES (?, ?)",
            (utcnow(), json.dumps([r.decode("utf-8", "backslashreplace") for r in roots])),
        )
        return int(cur.lastrowid or 0)


def finish_scan(ledger: Ledger, scan_id: int, status: str) -> None:
    with ledger.transaction() as conn:
        conn.execute("UPDATE scans SET finished_at = ?, status = ? WHERE id = ?", (utcnow(), status, scan_id))


def known_files(ledger: Ledger, roots: Sequence[bytes]) -> dict[bytes, tuple[int, int, str]]:
    """Every recorded path under ``roots``: path -> (size, mtime_ns, state)."""
    known: dict[bytes, tuple[int, int, str]] = {}
    for root in roots:
        prefix = root.rstrip(b"/") + b"/"
        rows = ledger.conn.execute(
            "SELECT path, size, mtime_ns, state FROM instances WHERE substr(path, 1, ?) = ? OR path = ?",
            (len(prefix), prefix, root),
        )
        for path, size, mtime_ns, state in rows:
            known[bytes(path)] = (size, mtime_ns, state)
    return known


def record_indexed(
    ledger: Ledger,
    scan_id: int,
    rows: Iterable[tuple[bytes, int, int, HeaderFacts, str | None]],
) -> None:
    """Insert or refresh readable instances: (path, size, mtime_ns, facts, exclusion or None)."""
    cols = ", ".join(_FACT_COLUMNS)
    marks = ", ".join("?" for _ in _FACT_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _FACT_COLUMNS)
    with ledger.transaction() as conn:
        conn.executemany(
            f"""INSERT INTO instances (path, size, mtime_ns, state, reason, eligible, exclusion,
                    first_seen_scan, last_seen_scan, {cols})
                VALUES (?, ?, ?, 'indexed', NULL, ?, ?, ?, ?, {marks})
                ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                    state = 'indexed', reason = NULL, eligible = excluded.eligible,
                    exclusion = excluded.exclusion, last_seen_scan = excluded.last_seen_scan,
                    moved_from = NULL, {updates}""",
            [
                (path, size, mtime, 1 if excl is None else 0, excl, scan_id, scan_id,
                 *(getattr(facts, c) for c in _FACT_COLUMNS))
                for path, size, mtime, facts, excl in rows
            ],
        )


def record_unreadable(ledger: Ledger, scan_id: int, rows: Iterable[tuple[bytes, int, int, str]]) -> None:
    """Insert or refresh unreadable files: (path, size, mtime_ns, reason)."""
    with ledger.transaction() as conn:
        conn.executemany(
            """INSERT INTO instances (path, size, mtime_ns, state, reason, eligible, first_seen_scan, last_seen_scan)
               VALUES (?, ?, ?, 'unreadable', ?, 0, ?, ?)
               ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                   state = 'unreadable', reason = excluded.reason, eligible = 0,
                   last_seen_scan = excluded.last_seen_scan""",
            [(path, size, mtime, reason, scan_id, scan_id) for path, size, mtime, reason in rows],
        )


def mark_missing(ledger: Ledger, paths: Iterable[bytes]) -> tuple[int, int]:
    """Paths gone from the export: 'moved' when the same SOP instance now lives elsewhere,
    else 'missing'. Returns (missing, moved)."""
    missing = moved = 0
    with ledger.transaction() as conn:
        for path in paths:
            row = conn.execute("SELECT sop_instance_uid FROM instances WHERE path = ?", (path,)).fetchone()
            if row is None:
                continue
            target = None
            if row[0]:
                target = conn.execute(
                    "SELECT id FROM instances WHERE sop_instance_uid = ? AND state = 'indexed' AND path != ?",
                    (row[0], path),
                ).fetchone()
            if target:
                conn.execute("UPDATE instances SET moved_from = ? WHERE id = ?", (path, target[0]))
                conn.execute("DELETE FROM instances WHERE path = ?", (path,))
                moved += 1
            else:
                conn.execute("UPDATE instances SET state = 'missing', eligible = 0 WHERE path = ?", (path,))
                missing += 1
    return missing, moved


def summary(ledger: Ledger) -> dict[str, Any]:
    """Counts over the whole index: what the exports hold, what is eligible, what is unreadable."""
    q = ledger.conn.execute
    indexed = "state = 'indexed'"
    eligible = "state = 'indexed' AND eligible = 1"
    row = q(f"""SELECT COUNT(DISTINCT CASE WHEN {indexed} THEN patient_id || '|' || issuer END),
                       COUNT(DISTINCT CASE WHEN {indexed} THEN study_uid END),
                       COUNT(DISTINCT CASE WHEN {indexed} THEN series_uid END),
                       COALESCE(SUM({indexed}), 0), COALESCE(SUM(state = 'missing'), 0),
                       COUNT(DISTINCT CASE WHEN {eligible} THEN patient_id || '|' || issuer END),
                       COUNT(DISTINCT CASE WHEN {eligible} THEN study_uid END),
                       COUNT(DISTINCT CASE WHEN {eligible} THEN series_uid END),
                       COALESCE(SUM({eligible}), 0)
                FROM instances""").fetchone()  # one pass over the index instead of six
    out: dict[str, Any] = dict(zip(("patients", "studies", "series", "instances", "missing"), row[:5], strict=True))
    out["eligible"] = dict(zip(("patients", "studies", "series", "instances"), row[5:], strict=True))
    out["excluded"] = dict(Counter(dict(q(
        f"SELECT exclusion, COUNT(*) FROM instances WHERE {indexed} AND eligible = 0 GROUP BY exclusion").fetchall())))
    out["unreadable"] = dict(q(
        "SELECT reason, COUNT(*) FROM instances WHERE state = 'unreadable' GROUP BY reason").fetchall())
    return out


def unreadable_files(ledger: Ledger, limit: int = 1000) -> list[tuple[bytes, str]]:
    rows = ledger.conn.execute(
        "SELECT path, reason FROM instances WHERE state = 'unreadable' ORDER BY path LIMIT ?", (limit,))
    return [(bytes(p), r) for p, r in rows]
