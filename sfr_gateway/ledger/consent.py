"""SQL of the consent registry: append-only history, permanent withdrawals, withdrawal requests,
and the gate's view of eligible studies with their patients' consent.

Every function takes an open ``sqlite3.Connection``: the caller (``sfr_gateway.consent``) decides
the transaction (``Ledger.transaction()`` to write, ``Ledger.snapshot()`` to read consistently).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from .db import utcnow


@dataclass(frozen=True)
class Record:
    """One row of a patient's consent history (local data: holds the local patient ID)."""

    id: int
    patient_id: str
    issuer: str
    status: str
    effective: str
    recorded_at: str
    source: str
    reference: str
    operator: str
    reason: str


_RECORD_COLS = "id, patient_id, issuer, status, effective, recorded_at, source, reference, operator, reason"


def append_record(
    conn: sqlite3.Connection,
    patient_id: str,
    issuer: str,
    status: str,
    effective: str,
    source: str = "",
    reference: str = "",
    operator: str = "",
    reason: str = "",
) -> int:
    """Append one history record; returns its id."""
    cur = conn.execute(
        """INSERT INTO consent_records (patient_id, issuer, status, effective, recorded_at, source, reference,
                                        operator, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (patient_id, issuer, status, effective, utcnow(), source, reference, operator, reason),
    )
    return int(cur.lastrowid or 0)


def current(conn: sqlite3.Connection, patient_id: str, issuer: str) -> Record | None:
    """The record that holds the patient's current status (latest effective date, then latest id)."""
    row = conn.execute(
        f"""SELECT {_RECORD_COLS} FROM consent_records WHERE patient_id = ? AND issuer = ?
            ORDER BY effective DESC, id DESC LIMIT 1""",
        (patient_id, issuer),
    ).fetchone()
    return Record(*row) if row else None


def history(conn: sqlite3.Connection, patient_id: str, issuer: str) -> list[Record]:
    """Every record of the patient, in the order they were recorded."""
    rows = conn.execute(
        f"SELECT {_RECORD_COLS} FROM consent_records WHERE patient_id = ? AND issuer = ? ORDER BY id",
        (patient_id, issuer),
    ).fetchall()
    return [Record(*r) for r in rows]


def is_withdrawn(conn: sqlite3.Connection, patient_id: str, issuer: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM consent_withdrawals WHERE patient_id = ? AND issuer = ?", (patient_id, issuer)
    ).fetchone() is not None


def add_withdrawal(conn: sqlite3.Connection, patient_id: str, issuer: str, effective: str, record_id: int) -> bool:
    """Mark the patient withdrawn for good. False if they already were."""
    cur = conn.execute(
        """INSERT INTO consent_withdrawals (patient_id, issuer, effective, recorded_at, record_id)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient_id, issuer) DO NOTHING""",
        (patient_id, issuer, effective, utcnow(), record_id),
    )
    return cur.rowcount == 1


def patient_studies(conn: sqlite3.Connection, patient_id: str, issuer: str) -> list[str]:
    """Study UIDs of the patient's indexed instances (eligible or not)."""
    rows = conn.execute(
        """SELECT DISTINCT study_uid FROM instances WHERE patient_id = ? AND issuer = ? AND study_uid IS NOT NULL
           ORDER BY study_uid""",
        (patient_id, issuer),
    ).fetchall()
    return [r[0] for r in rows]


# Batch states that mean "not yet (fully) delivered": a withdrawal cancels them.
PENDING_BATCH_STATES = ("created", "pending", "packaging", "packaged", "queued", "uploading", "failed")


def cancel_pending_batches(conn: sqlite3.Connection, patient_id: str, issuer: str) -> int:
    """Cancel the patient's batches that are not yet delivered; returns how many.

    The batch table belongs to migration 0003 (upload issue). Until it exists this returns 0.
    When it exists with ``study_uid`` and ``state`` columns, batches of the patient's studies in
    one of ``PENDING_BATCH_STATES`` become ``cancelled``. The batch code should also re-check
    ``sfr_gateway.consent.release_basis`` in the transaction that packages or sends a batch.
    """
    cols = {r[1] for r in conn.execute("PRAGMA table_info(batches)").fetchall()}
    if not {"study_uid", "state"} <= cols:
        return 0
    studies = patient_studies(conn, patient_id, issuer)
    if not studies:
        return 0
    marks = ",".join("?" for _ in studies)
    states = ",".join("?" for _ in PENDING_BATCH_STATES)
    cur = conn.execute(
        f"UPDATE batches SET state = 'cancelled' WHERE study_uid IN ({marks}) AND state IN ({states})",
        (*studies, *PENDING_BATCH_STATES),
    )
    return cur.rowcount


def queue_withdrawal_request(
    conn: sqlite3.Connection, pseudonym: str, created_at: str, payload: str, signature: str, signature_format: str
) -> bool:
    """Queue a request for the pseudonym unless one exists. True if queued now."""
    cur = conn.execute(
        """INSERT INTO withdrawal_requests (pseudonym, created_at, payload, signature, signature_format)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT (pseudonym) DO NOTHING""",
        (pseudonym, created_at, payload, signature, signature_format),
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class WithdrawalRequest:
    """A queued withdrawal request: only the pseudonym, the signed payload and delivery state."""

    id: int
    pseudonym: str
    created_at: str
    payload: str
    signature: str
    signature_format: str
    state: str
    attempts: int
    sent_at: str | None
    last_error: str | None


def withdrawal_requests(conn: sqlite3.Connection, state: str | None = None) -> list[WithdrawalRequest]:
    """Queued requests (all, or in one state), oldest first."""
    sql = """SELECT id, pseudonym, created_at, payload, signature, signature_format, state, attempts, sent_at,
                    last_error FROM withdrawal_requests"""
    args: tuple[str, ...] = ()
    if state is not None:
        sql += " WHERE state = ?"
        args = (state,)
    return [WithdrawalRequest(*r) for r in conn.execute(sql + " ORDER BY id", args).fetchall()]


def mark_request(conn: sqlite3.Connection, request_id: int, state: str, error: str | None = None) -> None:
    """Record a delivery attempt: ``sent``/``acknowledged``, or still ``pending`` with an error."""
    conn.execute(
        """UPDATE withdrawal_requests SET state = ?, attempts = attempts + 1, last_error = ?,
               sent_at = CASE WHEN ? = 'pending' THEN sent_at ELSE ? END WHERE id = ?""",
        (state, error, state, utcnow(), request_id),
    )


@dataclass(frozen=True)
class StudyConsent:
    """One eligible study and its patient's consent (local data)."""

    study_uid: str
    patient_id: str | None
    issuer: str
    status: str
    effective: str | None
    withdrawn: bool
    instances: int


def eligible_studies_with_consent(conn: sqlite3.Connection) -> list[StudyConsent]:
    """Every eligible indexed study with its patient's current consent and withdrawal flag.

    One statement; call it inside ``Ledger.snapshot()`` with any other read of the same decision.
    """
    rows = conn.execute(
        """WITH s AS (
               SELECT study_uid, patient_id, issuer, COUNT(*) AS n FROM instances
               WHERE state = 'indexed' AND eligible = 1 AND study_uid IS NOT NULL
               GROUP BY study_uid, patient_id, issuer
           )
           SELECT s.study_uid, s.patient_id, s.issuer, COALESCE(c.status, 'unknown'), c.effective,
                  w.patient_id IS NOT NULL, s.n
           FROM s
           LEFT JOIN consent_current c ON c.patient_id = s.patient_id AND c.issuer = s.issuer
           LEFT JOIN consent_withdrawals w ON w.patient_id = s.patient_id AND w.issuer = s.issuer
           ORDER BY s.study_uid"""
    ).fetchall()
    return [StudyConsent(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]


@dataclass(frozen=True)
class PatientConsent:
    """A patient known to the registry or to the index, with counts (local data)."""

    patient_id: str
    issuer: str
    status: str
    effective: str | None
    withdrawn: bool
    records: int
    eligible_studies: int


def patients(conn: sqlite3.Connection, statuses: Sequence[str] | None = None) -> list[PatientConsent]:
    """Patients with a consent record or an eligible study, with current status and counts."""
    rows = conn.execute(
        """WITH rec AS (
               SELECT patient_id, issuer, COUNT(*) AS n FROM consent_records GROUP BY patient_id, issuer
           ), st AS (
               SELECT patient_id, issuer, COUNT(DISTINCT study_uid) AS n FROM instances
               WHERE state = 'indexed' AND eligible = 1 AND patient_id IS NOT NULL GROUP BY patient_id, issuer
           ), known AS (
               SELECT patient_id, issuer FROM rec UNION SELECT patient_id, issuer FROM st
           )
           SELECT k.patient_id, k.issuer,
                  CASE WHEN w.patient_id IS NOT NULL THEN 'withdrawn' ELSE COALESCE(c.status, 'unknown') END,
                  c.effective, w.patient_id IS NOT NULL, COALESCE(rec.n, 0), COALESCE(st.n, 0)
           FROM known k
           LEFT JOIN rec ON rec.patient_id = k.patient_id AND rec.issuer = k.issuer
           LEFT JOIN st ON st.patient_id = k.patient_id AND st.issuer = k.issuer
           LEFT JOIN consent_current c ON c.patient_id = k.patient_id AND c.issuer = k.issuer
           LEFT JOIN consent_withdrawals w ON w.patient_id = k.patient_id AND w.issuer = k.issuer
           ORDER BY k.issuer, k.patient_id"""
    ).fetchall()
    out = [PatientConsent(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]
    if statuses:
        out = [p for p in out if p.status in statuses]
    return out


def known_issuers(conn: sqlite3.Connection, patient_id: str) -> list[str]:
    """Issuers under which the index holds this patient ID (to catch a consent recorded under
    the wrong issuer)."""
    rows = conn.execute(
        "SELECT DISTINCT issuer FROM instances WHERE patient_id = ? AND state = 'indexed' ORDER BY issuer",
        (patient_id,),
    ).fetchall()
    return [r[0] for r in rows]


def issuer_mismatches(conn: sqlite3.Connection) -> int:
    """Patient IDs the index holds under an issuer that has no consent record, while the registry
    has records for the same ID under another issuer: almost always a consent recorded with the
    wrong issuer (recording it again with the right one clears the warning)."""
    return int(conn.execute(
        """SELECT COUNT(DISTINCT i.patient_id)
           FROM (SELECT DISTINCT patient_id, issuer FROM instances WHERE state = 'indexed') i
           JOIN (SELECT DISTINCT patient_id, issuer FROM consent_records) r
                ON r.patient_id = i.patient_id AND r.issuer != i.issuer
           WHERE NOT EXISTS (SELECT 1 FROM consent_records c WHERE c.patient_id = i.patient_id
                                 AND c.issuer = i.issuer)"""
    ).fetchone()[0])
