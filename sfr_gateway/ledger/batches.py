"""SQL for batches and releases (written by the release pipeline and the uploader)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .db import Ledger, utcnow


@dataclass(frozen=True)
class PendingInstance:
    """An eligible source instance of a releasable study, not yet released."""

    sop_instance_uid: str
    path: bytes
    size: int
    series_uid: str
    patient_id: str = ""  # the identity the instance names: a batch holds one identity's instances
    issuer: str = ""


@dataclass(frozen=True)
class Batch:
    batch_id: str
    study_uid: str
    patient_id: str
    issuer: str
    pseudonym: str
    part: int
    state: str
    file_name: str | None
    sha256: str | None
    size: int | None
    files: int | None
    attempts: int
    error: str | None


_BATCH_COLS = "batch_id, study_uid, patient_id, issuer, pseudonym, part, state, file_name, sha256, size, files, attempts, error"


def pending_instances(ledger: Ledger, study_uid: str) -> list[PendingInstance]:
    """Eligible, indexed instances of the study that have no release row yet (one per SOP UID).
    Of files sharing a SOP Instance UID, only the first indexed eligible one, wherever it is (see
    ``duplicates``): the same UID is never offered twice, even across studies or patients."""
    rows = ledger.conn.execute(
        """SELECT i.sop_instance_uid, MIN(i.path), i.size, i.series_uid, COALESCE(i.patient_id, ''), i.issuer
           FROM instances i
           LEFT JOIN releases r ON r.sop_instance_uid = i.sop_instance_uid
           WHERE i.study_uid = ? AND i.state = 'indexed' AND i.eligible = 1 AND r.sop_instance_uid IS NULL
             AND (NOT EXISTS (SELECT 1 FROM shared_uids s WHERE s.sop_instance_uid = i.sop_instance_uid)
                  OR i.id = (SELECT MIN(o.id) FROM instances o WHERE o.sop_instance_uid = i.sop_instance_uid
                             AND +o.state = 'indexed' AND +o.eligible = 1))
           GROUP BY i.sop_instance_uid
           ORDER BY i.series_number, i.series_uid, MIN(i.path)""",
        (study_uid,),
    ).fetchall()
    return [PendingInstance(r[0], bytes(r[1]), r[2], r[3] or "", r[4], r[5] or "") for r in rows]


def release_rows(ledger: Ledger) -> dict[str, tuple[str, str | None, str | None]]:
    """Every SOP Instance UID with a release row: (state, batch ID, reason)."""
    rows = ledger.conn.execute("SELECT sop_instance_uid, state, batch_id, reason FROM releases")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def next_part(ledger: Ledger, study_uid: str) -> int:
    row = ledger.conn.execute("SELECT COALESCE(MAX(part), 0) FROM batches WHERE study_uid = ?", (study_uid,)).fetchone()
    return int(row[0]) + 1


def begin_batch(conn: sqlite3.Connection, *, batch_id: str, study_uid: str, patient_id: str, issuer: str,
                pseudonym: str, new_study_uid: str, part: int, consent_status: str, consent_date: str) -> None:
    """Record the intent to write a batch (state 'packaging'), inside the caller's transaction."""
    now = utcnow()
    conn.execute(
        """INSERT INTO batches (batch_id, study_uid, patient_id, issuer, pseudonym, new_study_uid, part, state,
               consent_status, consent_date, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'packaging', ?, ?, ?, ?)""",
        (batch_id, study_uid, patient_id, issuer, pseudonym, new_study_uid, part, consent_status, consent_date,
         now, now),
    )


def finish_batch(conn: sqlite3.Connection, batch_id: str, *, file_name: str, sha256: str, size: int, files: int,
                 plaintext_bytes: int, released: Sequence[str], study_uid: str,
                 quarantined: Sequence[tuple[str, str]]) -> None:
    """Mark a written batch 'packaged' and record its instances, in the caller's transaction."""
    now = utcnow()
    conn.execute(
        """UPDATE batches SET state = 'packaged', file_name = ?, sha256 = ?, size = ?, files = ?,
               plaintext_bytes = ?, updated_at = ? WHERE batch_id = ? AND state = 'packaging'""",
        (file_name, sha256, size, files, plaintext_bytes, now, batch_id),
    )
    conn.executemany(
        "INSERT INTO releases (sop_instance_uid, study_uid, batch_id, state, released_at) VALUES (?, ?, ?, 'packaged', ?)",
        [(uid, study_uid, batch_id, now) for uid in released],
    )
    record_quarantined(conn, study_uid, quarantined)


def record_quarantined(conn: sqlite3.Connection, study_uid: str, quarantined: Sequence[tuple[str, str]]) -> None:
    """Instances refused by the engine: never retried until their file changes."""
    now = utcnow()
    conn.executemany(
        """INSERT INTO releases (sop_instance_uid, study_uid, state, reason, released_at)
           VALUES (?, ?, 'quarantined', ?, ?) ON CONFLICT (sop_instance_uid) DO NOTHING""",
        [(uid, study_uid, reason, now) for uid, reason in quarantined],
    )


def drop_batch(conn: sqlite3.Connection, batch_id: str) -> None:
    """Forget a batch that never got past 'packaging' (its file, if any, was never sent)."""
    conn.execute("DELETE FROM batches WHERE batch_id = ? AND state = 'packaging'", (batch_id,))


def batches(ledger: Ledger, states: Sequence[str] | None = None) -> list[Batch]:
    if states:
        marks = ",".join("?" for _ in states)
        rows = ledger.conn.execute(
            f"SELECT {_BATCH_COLS} FROM batches WHERE state IN ({marks}) ORDER BY created_at, batch_id", tuple(states))
    else:
        rows = ledger.conn.execute(f"SELECT {_BATCH_COLS} FROM batches ORDER BY created_at, batch_id")
    return [Batch(*r) for r in rows.fetchall()]


def batch_state(ledger: Ledger, batch_id: str) -> str | None:
    return state_in(ledger.conn, batch_id)


def state_in(conn: sqlite3.Connection, batch_id: str) -> str | None:
    """The batch's state as ``conn`` sees it (inside a transaction); None when it is gone."""
    row = conn.execute("SELECT state FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    return row[0] if row else None


def mark_acknowledged(ledger: Ledger, batch_id: str) -> bool:
    """packaged/failed -> acknowledged. False if the batch was cancelled meanwhile."""
    with ledger.transaction() as conn:
        now = utcnow()
        cur = conn.execute(
            """UPDATE batches SET state = 'acknowledged', acknowledged_at = ?, updated_at = ?, error = NULL
               WHERE batch_id = ? AND state IN ('packaged', 'failed')""",
            (now, now, batch_id),
        )
        return cur.rowcount == 1


def mark_sending(conn: sqlite3.Connection, batch_id: str) -> None:
    """An upload of the batch starts now (in the caller's transaction, with its consent check)."""
    conn.execute("UPDATE batches SET sending_at = ? WHERE batch_id = ?", (utcnow(), batch_id))


def mark_failed(ledger: Ledger, batch_id: str, error: str) -> None:
    with ledger.transaction() as conn:
        conn.execute(
            """UPDATE batches SET state = CASE WHEN state = 'packaged' THEN 'failed' ELSE state END,
                   attempts = attempts + 1, error = ?, updated_at = ? WHERE batch_id = ?""",
            (error[:500], utcnow(), batch_id),
        )


def status_counts(ledger: Ledger) -> dict[str, Any]:
    """Counts and bytes by batch state; last success and last error (no patient values)."""
    q = ledger.conn.execute
    by_state = {state: {"batches": n, "bytes": b or 0, "files": f or 0}
                for state, n, b, f in q("SELECT state, COUNT(*), SUM(size), SUM(files) FROM batches GROUP BY state")}
    last_ok = q("SELECT MAX(acknowledged_at) FROM batches").fetchone()[0]
    last_err = q("SELECT updated_at, batch_id, error FROM batches WHERE error IS NOT NULL "
                 "ORDER BY updated_at DESC LIMIT 1").fetchone()
    released = dict(q("SELECT state, COUNT(*) FROM releases GROUP BY state").fetchall())
    return {
        "batches": by_state,
        "last_success": last_ok,
        "last_error": {"at": last_err[0], "batch_id": last_err[1], "error": last_err[2]} if last_err else None,
        "instances": {"packaged": released.get("packaged", 0), "quarantined": released.get("quarantined", 0)},
    }
