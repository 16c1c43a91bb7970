"""SQL for the index of source instances (written by scan, read by selection and the pipeline)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .consent import without_patient_id
from .db import Ledger, utcnow


@dataclass(frozen=True)
class HeaderFacts:
    """What scan records about one readable instance (``scan.header`` reads it; one column each)."""

    sop_class_uid: str
    sop_instance_uid: str
    patient_id: str
    issuer: str
    study_uid: str
    series_uid: str
    modality: str
    body_part: str
    study_date: str
    study_description: str
    series_description: str
    protocol_name: str
    image_type: str
    series_number: int | None
    frames: int
    transfer_syntax: str


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
        note_shared(conn, {facts.sop_instance_uid for _, _, _, facts, _ in rows})


def note_shared(conn: sqlite3.Connection, uids: Iterable[str]) -> None:
    """Remember which of ``uids`` more than one indexed file now has (in the caller's transaction).

    ``+state`` here and below keeps SQLite on the UID index: without statistics it would pick the
    state index and read every indexed row for each file (50,000 files: minutes instead of ms);
    ``CROSS JOIN`` below likewise makes the few shared UIDs drive the joins."""
    conn.executemany(
        """INSERT OR IGNORE INTO shared_uids (sop_instance_uid)
           SELECT ?1 WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM instances
                            WHERE sop_instance_uid = ?1 AND +state = 'indexed' LIMIT 2)) > 1""",
        [(uid,) for uid in uids if uid],
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


def mark_missing(ledger: Ledger, paths: Iterable[bytes], scan_id: int) -> tuple[int, int]:
    """Paths gone from the export: 'moved' when the same SOP instance, same size, showed up at a
    new path in this scan (``scan_id``), else 'missing'. A file that was already indexed with the
    same UID is a second copy, not the new place of the gone one. A moved file keeps its row id
    (the order files were first seen in, which decides who owns a shared UID). Returns (missing, moved)."""
    missing = moved = 0
    with ledger.transaction() as conn:
        for path in paths:
            row = conn.execute("SELECT id, sop_instance_uid, size FROM instances WHERE path = ?", (path,)).fetchone()
            if row is None:
                continue
            old_id, uid, size = row
            target = None
            if uid:
                target = conn.execute(
                    """SELECT id FROM instances WHERE sop_instance_uid = ? AND +state = 'indexed' AND path != ?
                           AND first_seen_scan = ? AND moved_from IS NULL AND size = ? ORDER BY id LIMIT 1""",
                    (uid, path, scan_id, size),
                ).fetchone()
            if target:
                conn.execute("DELETE FROM instances WHERE id = ?", (old_id,))
                conn.execute("UPDATE instances SET id = ?, moved_from = ? WHERE id = ?", (old_id, path, target[0]))
                moved += 1
            else:
                conn.execute("UPDATE instances SET state = 'missing', eligible = 0 WHERE path = ?", (path,))
                missing += 1
    return missing, moved


def prune_shared(ledger: Ledger) -> None:
    """Forget shared UIDs that one file at most still has (a move, a deleted copy)."""
    with ledger.transaction() as conn:
        conn.execute("""DELETE FROM shared_uids WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM instances i
                            WHERE i.sop_instance_uid = shared_uids.sop_instance_uid AND +i.state = 'indexed'
                            LIMIT 2)) < 2""")


def shared_in_scan(ledger: Ledger, scan_id: int) -> int:
    """Files read in scan ``scan_id`` whose SOP Instance UID another indexed file also has."""
    row = ledger.conn.execute(
        """SELECT COUNT(*) FROM shared_uids s CROSS JOIN instances i ON i.sop_instance_uid = s.sop_instance_uid
           WHERE +i.last_seen_scan = ? AND +i.state = 'indexed'""", (scan_id,)).fetchone()
    return int(row[0])


def shared_groups(ledger: Ledger, limit: int = 1000) -> list[list[bytes]]:
    """The paths of the indexed files that share a SOP Instance UID, one list per UID (first
    indexed first), up to ``limit`` UIDs."""
    groups: dict[str, list[bytes]] = {}
    rows = ledger.conn.execute(
        """SELECT i.sop_instance_uid, i.path FROM shared_uids s
           CROSS JOIN instances i ON i.sop_instance_uid = s.sop_instance_uid AND +i.state = 'indexed'
           ORDER BY s.rowid, i.id""")
    for uid, path in rows:
        if uid not in groups and len(groups) >= limit:
            break
        groups.setdefault(uid, []).append(bytes(path))
    return [paths for paths in groups.values() if len(paths) > 1]


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
    shared = q("""SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (
                      SELECT COUNT(*) AS n FROM shared_uids s CROSS JOIN instances i
                      ON i.sop_instance_uid = s.sop_instance_uid AND +i.state = 'indexed'
                      GROUP BY s.sop_instance_uid HAVING COUNT(*) > 1)""").fetchone()
    out["shared_uids"] = {"uids": shared[0], "files": shared[1]}
    out["without_patient_id"] = without_patient_id(ledger.conn)  # no consent can match them: held by default
    return out


def unreadable_files(ledger: Ledger, limit: int = 1000) -> list[tuple[bytes, str]]:
    rows = ledger.conn.execute(
        "SELECT path, reason FROM instances WHERE state = 'unreadable' ORDER BY path LIMIT ?", (limit,))
    return [(bytes(p), r) for p, r in rows]


@dataclass(frozen=True)
class IndexedFile:
    """One file of the index as selection recorded it (what the audit as run reports on)."""

    path: bytes
    state: str
    reason: str | None
    eligible: int
    exclusion: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    patient_id: str | None
    issuer: str
    study_uid: str | None
    series_uid: str | None
    modality: str | None
    series_number: int | None


def files_under(ledger: Ledger, roots: Sequence[bytes]) -> list[IndexedFile]:
    """The indexed and unreadable files under ``roots`` (not those gone), by path."""
    out: list[IndexedFile] = []
    for root in roots:
        prefix = root.rstrip(b"/") + b"/"
        rows = ledger.conn.execute(
            """SELECT path, state, reason, eligible, exclusion, sop_class_uid, sop_instance_uid, patient_id,
                      issuer, study_uid, series_uid, modality, series_number
               FROM instances WHERE (substr(path, 1, ?) = ? OR path = ?) AND state IN ('indexed', 'unreadable')
               ORDER BY path""", (len(prefix), prefix, root))
        out.extend(IndexedFile(bytes(r[0]), *r[1:]) for r in rows)
    return out
