"""SQL for what runs hold back: studies whose release failed, and files that share a SOP
Instance UID with another (tables of migration 0007).

The small tables drive every join with ``instances`` (``CROSS JOIN``, ``+state``): without
statistics SQLite would otherwise read the whole index of instances for a handful of rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from .db import Ledger, utcnow


@dataclass(frozen=True)
class HeldStudy:
    study_uid: str
    pseudonym: str
    example: bytes | None
    files: int
    reason: str
    detail: str
    first_at: str
    last_at: str
    attempts: int


@dataclass(frozen=True)
class SharedFile:
    """An eligible indexed file whose SOP Instance UID another eligible file also has."""

    id: int
    path: bytes
    size: int
    mtime_ns: int
    sop_instance_uid: str
    study_uid: str


@dataclass(frozen=True)
class Decision:
    path: bytes
    size: int
    mtime_ns: int
    sop_instance_uid: str
    study_uid: str
    other_path: bytes
    verdict: str  # identical | conflict
    detail: str
    decided_at: str


def hold_study(conn: sqlite3.Connection, *, study_uid: str, pseudonym: str, example: bytes | None, files: int,
               reason: str, detail: str) -> None:
    """Record (or count one more attempt of) a study held back, in the caller's transaction."""
    now = utcnow()
    conn.execute(
        """INSERT INTO held_studies (study_uid, pseudonym, example, files, reason, detail, first_at, last_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (study_uid) DO UPDATE SET pseudonym = excluded.pseudonym, example = excluded.example,
               files = excluded.files, reason = excluded.reason, detail = excluded.detail,
               last_at = excluded.last_at, attempts = attempts + 1""",
        (study_uid, pseudonym, example, files, reason, detail[:1000], now, now),
    )


def keep_only(ledger: Ledger, study_uids: Iterable[str]) -> None:
    """The held studies are exactly those the last run held back: forget the others (released
    since, withdrawn, or gone from the export)."""
    keep = list(study_uids)
    with ledger.transaction() as conn:
        marks = ",".join("?" for _ in keep)
        conn.execute(f"DELETE FROM held_studies WHERE study_uid NOT IN ({marks})", keep)  # noqa: S608 - marks only


def held_studies(ledger: Ledger) -> list[HeldStudy]:
    rows = ledger.conn.execute(
        """SELECT study_uid, pseudonym, example, files, reason, detail, first_at, last_at, attempts
           FROM held_studies ORDER BY first_at, study_uid""").fetchall()
    return [HeldStudy(r[0], r[1], bytes(r[2]) if r[2] is not None else None, *r[3:]) for r in rows]


def shared_eligible(ledger: Ledger) -> list[list[SharedFile]]:
    """For each shared SOP Instance UID, its eligible indexed files, first indexed first (the
    owner: the one released); only UIDs that two eligible files or more still share."""
    rows = ledger.conn.execute(
        """SELECT i.id, i.path, i.size, i.mtime_ns, i.sop_instance_uid, i.study_uid FROM shared_uids s
           CROSS JOIN instances i ON i.sop_instance_uid = s.sop_instance_uid AND +i.state = 'indexed' AND +i.eligible = 1
           ORDER BY s.sop_instance_uid, i.id""").fetchall()
    groups: dict[str, list[SharedFile]] = {}
    for r in rows:
        groups.setdefault(r[4], []).append(SharedFile(r[0], bytes(r[1]), r[2], r[3], r[4], r[5] or ""))
    return [g for g in groups.values() if len(g) > 1]


def decisions(ledger: Ledger) -> dict[bytes, Decision]:
    rows = ledger.conn.execute(
        """SELECT path, size, mtime_ns, sop_instance_uid, study_uid, other_path, verdict, detail, decided_at
           FROM duplicate_files""").fetchall()
    return {bytes(r[0]): Decision(bytes(r[0]), r[1], r[2], r[3], r[4], bytes(r[5]), *r[6:]) for r in rows}


def record_decisions(ledger: Ledger, made: Iterable[Decision], stale: Iterable[bytes]) -> None:
    """Store new verdicts and forget those that no longer hold (file changed, owner moved)."""
    with ledger.transaction() as conn:
        conn.executemany("DELETE FROM duplicate_files WHERE path = ?", [(p,) for p in stale])
        conn.executemany(
            """INSERT INTO duplicate_files (path, size, mtime_ns, sop_instance_uid, study_uid, other_path, verdict,
                   detail, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                   sop_instance_uid = excluded.sop_instance_uid, study_uid = excluded.study_uid,
                   other_path = excluded.other_path, verdict = excluded.verdict, detail = excluded.detail,
                   decided_at = excluded.decided_at""",
            [(d.path, d.size, d.mtime_ns, d.sop_instance_uid, d.study_uid, d.other_path, d.verdict, d.detail,
              d.decided_at) for d in made],
        )


def held_files(ledger: Ledger) -> list[Decision]:
    """Files held back because another file has their SOP Instance UID with other content, as
    long as they are still indexed unchanged."""
    rows = ledger.conn.execute(
        """SELECT d.path, d.size, d.mtime_ns, d.sop_instance_uid, d.study_uid, d.other_path, d.verdict, d.detail,
                  d.decided_at
           FROM duplicate_files d CROSS JOIN instances i ON i.path = d.path AND i.size = d.size
               AND i.mtime_ns = d.mtime_ns AND +i.state = 'indexed' AND +i.eligible = 1
           WHERE d.verdict = 'conflict' ORDER BY d.decided_at, d.path""").fetchall()
    return [Decision(bytes(r[0]), r[1], r[2], r[3], r[4], bytes(r[5]), *r[6:]) for r in rows]


def quarantined_files(ledger: Ledger, limit: int = 10000) -> list[tuple[bytes | None, str, str]]:
    """Instances the engine refused in a run: (a path that has the instance's UID, if still
    indexed; reason; when)."""
    rows = ledger.conn.execute(
        """SELECT (SELECT i.path FROM instances i WHERE i.sop_instance_uid = r.sop_instance_uid ORDER BY i.id LIMIT 1),
                  COALESCE(r.reason, ''), r.released_at
           FROM releases r WHERE r.state = 'quarantined' ORDER BY r.released_at, r.rowid LIMIT ?""",
        (limit,)).fetchall()
    return [(bytes(r[0]) if r[0] is not None else None, r[1], r[2]) for r in rows]


def unreadable_files(ledger: Ledger) -> list[tuple[bytes, str, str]]:
    """Files the scan could not read, as long as they are in the export unchanged: (path,
    reason, when the scan that found it so started). A changed file is read again, a removed one
    is marked missing: either way it leaves this list."""
    rows = ledger.conn.execute(
        """SELECT i.path, COALESCE(i.reason, ''), COALESCE(s.started_at, '') FROM instances i
           LEFT JOIN scans s ON s.id = i.last_seen_scan
           WHERE i.state = 'unreadable' ORDER BY i.path""").fetchall()
    return [(bytes(r[0]), r[1], r[2]) for r in rows]


def refused_in_export(ledger: Ledger) -> int:
    """Instances the engine refused whose file is still in the export (indexed)."""
    row = ledger.conn.execute(
        """SELECT COUNT(*) FROM releases r WHERE r.state = 'quarantined' AND EXISTS (
               SELECT 1 FROM instances i WHERE i.sop_instance_uid = r.sop_instance_uid AND +i.state = 'indexed')"""
    ).fetchone()
    return int(row[0])


def counts(ledger: Ledger) -> dict[str, int]:
    """How many studies and files are held back now, and instances the engine quarantined."""
    q = ledger.conn.execute
    studies = q("SELECT COUNT(*) FROM held_studies").fetchone()[0]
    files = q("""SELECT COUNT(*) FROM duplicate_files d CROSS JOIN instances i ON i.path = d.path AND i.size = d.size
                     AND i.mtime_ns = d.mtime_ns AND +i.state = 'indexed' AND +i.eligible = 1
                 WHERE d.verdict = 'conflict'""").fetchone()[0]
    identical = q("SELECT COUNT(*) FROM duplicate_files WHERE verdict = 'identical'").fetchone()[0]
    quarantined = q("SELECT COUNT(*) FROM releases WHERE state = 'quarantined'").fetchone()[0]
    return {"studies": studies, "files": files, "identical_copies": identical, "quarantined": quarantined}


def unreadable_count(ledger: Ledger) -> int:
    """Files the scan could not read (the state index: few rows, found without reading the others)."""
    return int(ledger.conn.execute("SELECT COUNT(*) FROM instances WHERE state = 'unreadable'").fetchone()[0])
