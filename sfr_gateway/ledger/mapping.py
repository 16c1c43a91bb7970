"""SQL for the local pseudonym mapping (sealed rows, keyed lookup refs) and released pseudonyms.

Rows hold only keyed references and AES-GCM ciphertext: this module never sees a clear value.
The logic (keys, sealing, recomputation) lives in :mod:`sfr_gateway.mapping` (``store``, ``derive``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .db import Ledger, utcnow


@dataclass(frozen=True)
class SealedRow:
    """One stored mapping row, as the database holds it."""

    study_ref: bytes
    patient_ref: bytes
    pid_ref: bytes
    pseudonym_ref: bytes
    sealed: bytes
    key_id: str
    secret_fp: str
    source: str


@dataclass(frozen=True)
class ReleasedRow:
    """One pseudonym recorded as sent to the central host."""

    pseudonym: str
    new_study_uid: str
    patient_ref: bytes | None
    key_id: str
    secret_fp: str
    batch_id: str
    released_at: str


_ROW_COLS = "study_ref, patient_ref, pid_ref, pseudonym_ref, sealed, key_id, secret_fp, source"


def _row(r: tuple) -> SealedRow:  # type: ignore[type-arg]
    return SealedRow(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), bytes(r[4]), r[5], r[6], r[7])


def get_row(ledger: Ledger, study_ref: bytes) -> SealedRow | None:
    r = ledger.conn.execute(f"SELECT {_ROW_COLS} FROM mapping_studies WHERE study_ref = ?", (study_ref,)).fetchone()
    return _row(r) if r else None


def _upsert(conn: sqlite3.Connection, rows: Iterable[SealedRow]) -> int:
    now = utcnow()
    n = 0
    for row in rows:
        conn.execute(
            f"""INSERT INTO mapping_studies ({_ROW_COLS}, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT (study_ref) DO UPDATE SET patient_ref = excluded.patient_ref,
                    pid_ref = excluded.pid_ref, pseudonym_ref = excluded.pseudonym_ref,
                    sealed = excluded.sealed, key_id = excluded.key_id, secret_fp = excluded.secret_fp,
                    updated_at = excluded.updated_at""",
            (row.study_ref, row.patient_ref, row.pid_ref, row.pseudonym_ref, row.sealed, row.key_id,
             row.secret_fp, row.source, now, now),
        )
        n += 1
    return n


def upsert_rows(ledger: Ledger, rows: Iterable[SealedRow]) -> int:
    """Insert or replace sealed rows (keyed by ``study_ref``) in one transaction."""
    with ledger.transaction() as conn:
        return _upsert(conn, rows)


def rows_by(ledger: Ledger, column: str, ref: bytes) -> list[SealedRow]:
    """Rows whose keyed ``column`` (patient_ref, pid_ref or pseudonym_ref) equals ``ref``."""
    if column not in ("patient_ref", "pid_ref", "pseudonym_ref"):
        raise ValueError(f"not a lookup column: {column}")
    cur = ledger.conn.execute(f"SELECT {_ROW_COLS} FROM mapping_studies WHERE {column} = ? ORDER BY id", (ref,))
    return [_row(r) for r in cur]


def all_rows(ledger: Ledger) -> Iterator[SealedRow]:
    for r in ledger.conn.execute(f"SELECT {_ROW_COLS} FROM mapping_studies ORDER BY id"):
        yield _row(r)


def count_rows(ledger: Ledger) -> int:
    return int(ledger.conn.execute("SELECT COUNT(*) FROM mapping_studies").fetchone()[0])


def delete_all_rows(ledger: Ledger) -> int:
    """Drop every stored mapping row (tests simulate a lost mapping with this)."""
    with ledger.transaction() as conn:
        return conn.execute("DELETE FROM mapping_studies").rowcount


def delete_rows_of_other_keys(ledger: Ledger, key_id: str) -> int:
    """Drop rows sealed under another mapping key (unreadable once that key is lost)."""
    with ledger.transaction() as conn:
        return conn.execute("DELETE FROM mapping_studies WHERE key_id != ?", (key_id,)).rowcount


def count_rows_of_other_keys(ledger: Ledger, key_id: str) -> int:
    return int(ledger.conn.execute("SELECT COUNT(*) FROM mapping_studies WHERE key_id != ?", (key_id,)).fetchone()[0])


def record_released(ledger: Ledger, rows: Iterable[ReleasedRow]) -> int:
    """Record pseudonyms as sent (idempotent per pseudonym, new study UID and batch)."""
    with ledger.transaction() as conn:
        n = 0
        for r in rows:
            cur = conn.execute(
                """INSERT OR IGNORE INTO mapping_released
                   (pseudonym, new_study_uid, patient_ref, key_id, secret_fp, batch_id, released_at)
                   VALUES (?,?,?,?,?,?,?)""",
                (r.pseudonym, r.new_study_uid, r.patient_ref, r.key_id, r.secret_fp, r.batch_id,
                 r.released_at or utcnow()),
            )
            n += cur.rowcount
        return n


def released(ledger: Ledger) -> list[ReleasedRow]:
    cur = ledger.conn.execute(
        """SELECT pseudonym, new_study_uid, patient_ref, key_id, secret_fp, batch_id, released_at
           FROM mapping_released ORDER BY id""")
    return [ReleasedRow(r[0], r[1], bytes(r[2]) if r[2] is not None else None, r[3], r[4], r[5], r[6]) for r in cur]


def rotated_fingerprints(ledger: Ledger) -> dict[str, str]:
    """Pseudonym-secret fingerprints retired on purpose (``keys rotate-pseudonym``): fp -> when."""
    out: dict[str, str] = {}
    cur = ledger.conn.execute(
        "SELECT ts, detail FROM events WHERE action = 'rotate-pseudonym' AND result = 'ok' ORDER BY id")
    for ts, detail in cur:
        old = json.loads(detail).get("old_fingerprint")
        if isinstance(old, str):
            out[old] = ts
    return out


def candidate_studies(
    ledger: Ledger, eligible_only: bool, study_uids: Sequence[str] | None = None
) -> list[tuple[str, str, str, list[bytes]]]:
    """Studies of the instance index: (study_uid, patient_id, issuer, a few file paths).

    ``eligible_only`` keeps studies with at least one eligible instance (what the pipeline
    de-identifies); otherwise every indexed study. ``study_uids`` restricts to those studies.
    """
    where = "state = 'indexed' AND study_uid IS NOT NULL AND study_uid != ''"
    if eligible_only:
        where += " AND eligible = 1"
    params: list[str] = []
    if study_uids is not None:
        params = sorted(set(study_uids))
        if not params:
            return []
        where += f" AND study_uid IN ({', '.join('?' for _ in params)})"
    out: dict[tuple[str, str, str], list[bytes]] = {}
    cur = ledger.conn.execute(
        f"SELECT study_uid, COALESCE(patient_id, ''), COALESCE(issuer, ''), path FROM instances WHERE {where} "
        "ORDER BY study_uid, path", params)
    for study, pid, issuer, path in cur:
        paths = out.setdefault((study, pid, issuer), [])
        if len(paths) < 5:
            paths.append(bytes(path))
    return [(s, p, i, paths) for (s, p, i), paths in out.items()]


@dataclass(frozen=True)
class BatchStudy:
    """A batch the release pipeline wrote (table ``batches``), as the mapping sees it."""

    batch_id: str
    study_uid: str
    patient_id: str
    issuer: str
    pseudonym: str
    new_study_uid: str


def unsynced_batches(ledger: Ledger) -> list[BatchStudy]:
    """Batches written by the release pipeline that the mapping has not recorded yet."""
    cur = ledger.conn.execute(
        """SELECT batch_id, study_uid, patient_id, issuer, pseudonym, new_study_uid FROM batches
           WHERE state IN ('packaged', 'acknowledged', 'failed')
             AND batch_id NOT IN (SELECT batch_id FROM mapping_released) ORDER BY batch_id""")
    return [BatchStudy(*r) for r in cur]
