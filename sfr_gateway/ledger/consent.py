"""SQL of the consent registry: append-only history, permanent withdrawals, withdrawal requests,
and the gate's view of eligible studies with their patients' consent.

Every function takes an open ``sqlite3.Connection``: the caller (``sfr_gateway.consent.registry``) decides
the transaction (``Ledger.transaction()`` to write, ``Ledger.snapshot()`` to read consistently).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .db import utcnow


class Record(NamedTuple):
    """One row of a patient's consent history (local data: holds the local patient ID). A named
    tuple: the gate reads every record on each run (40,000 in 0.03 s instead of 0.12 s)."""

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
    scope: str = ""  # refused/withdrawn: 'issuer' or 'all-issuers' (see sfr_gateway.consent.identity)


_RECORD_COLS = "id, patient_id, issuer, status, effective, recorded_at, source, reference, operator, reason, scope"


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
    scope: str = "",
) -> int:
    """Append one history record; returns its id."""
    cur = conn.execute(
        """INSERT INTO consent_records (patient_id, issuer, status, effective, recorded_at, source, reference,
                                        operator, reason, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (patient_id, issuer, status, effective, utcnow(), source, reference, operator, reason, scope),
    )
    return int(cur.lastrowid or 0)


def history(conn: sqlite3.Connection, patient_id: str, issuer: str) -> list[Record]:
    """Every record of the patient, in the order they were recorded."""
    rows = conn.execute(
        f"SELECT {_RECORD_COLS} FROM consent_records WHERE patient_id = ? AND issuer = ? ORDER BY id",
        (patient_id, issuer),
    ).fetchall()
    return [Record(*r) for r in rows]


def add_withdrawal(conn: sqlite3.Connection, patient_id: str, issuer: str, effective: str, record_id: int) -> bool:
    """Mark the patient withdrawn for good. False if they already were."""
    cur = conn.execute(
        """INSERT INTO consent_withdrawals (patient_id, issuer, effective, recorded_at, record_id)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient_id, issuer) DO NOTHING""",
        (patient_id, issuer, effective, utcnow(), record_id),
    )
    return cur.rowcount == 1


def _in(column: str, values: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    """``AND column IN (...)`` for a list of values (nothing for None)."""
    if values is None:
        return "", ()
    return f" AND {column} IN ({','.join('?' for _ in values)})", tuple(values)


def records(conn: sqlite3.Connection, patient_ids: Sequence[str] | None = None) -> list[Record]:
    """Every consent record (or those of ``patient_ids``), by patient, effective date and id."""
    where, args = _in("patient_id", patient_ids)
    rows = conn.execute(
        f"SELECT {_RECORD_COLS} FROM consent_records WHERE 1{where} ORDER BY patient_id, effective, id", args)
    return [Record(*r) for r in rows.fetchall()]


def withdrawals(conn: sqlite3.Connection, patient_ids: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """(patient ID, issuer as recorded, scope) of every permanent withdrawal."""
    where, args = _in("w.patient_id", patient_ids)
    rows = conn.execute(
        f"""SELECT w.patient_id, w.issuer, COALESCE(r.scope, '') FROM consent_withdrawals w
            LEFT JOIN consent_records r ON r.id = w.record_id WHERE 1{where}""", args)
    return [(r[0], r[1], r[2]) for r in rows.fetchall()]


def index_issuers(conn: sqlite3.Connection, patient_ids: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Patient ID -> the issuers under which the index holds it (indexed instances, eligible or not)."""
    where, args = _in("patient_id", patient_ids)
    out: dict[str, set[str]] = {}
    rows = conn.execute(
        f"""SELECT DISTINCT patient_id, issuer FROM instances
            WHERE state = 'indexed' AND patient_id IS NOT NULL AND patient_id != ''{where}""", args)
    for pid, issuer in rows.fetchall():
        out.setdefault(pid, set()).add(issuer)
    return out


def site_issuers(conn: sqlite3.Connection) -> set[str]:
    """Every issuer the index holds (the issuers the exports use)."""
    rows = conn.execute(
        "SELECT DISTINCT issuer FROM instances WHERE state = 'indexed' AND patient_id IS NOT NULL AND patient_id != ''")
    return {r[0] for r in rows.fetchall()}


def patient_studies(conn: sqlite3.Connection, patient_id: str, issuer: str | None) -> list[str]:
    """Study UIDs of the identity's indexed instances and batches (``issuer`` None: every issuer)."""
    where, args = ("", ()) if issuer is None else (" AND issuer = ?", (issuer,))
    rows = conn.execute(
        f"""SELECT study_uid FROM instances WHERE patient_id = ?{where} AND study_uid IS NOT NULL
            UNION SELECT study_uid FROM batches WHERE patient_id = ?{where} ORDER BY 1""",
        (patient_id, *args, patient_id, *args),
    ).fetchall()
    return [r[0] for r in rows]


# Batch states that mean "not yet (fully) delivered": a withdrawal cancels them.
PENDING_BATCH_STATES = ("created", "pending", "packaging", "packaged", "queued", "uploading", "failed")


def cancel_pending_batches(conn: sqlite3.Connection, patient_id: str, issuer: str | None) -> int:
    """Cancel the batches not yet delivered of every study of the identity (``issuer`` None:
    the Patient ID under every issuer); returns how many. A study naming several patients is
    cancelled whole, as the gate holds it whole."""
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


@dataclass(frozen=True)
class ReleasedBatch:
    """A batch of the patient that left the site, or may have (local data)."""

    batch_id: str
    study_uid: str
    issuer: str
    pseudonym: str
    state: str
    created_at: str


def released_batches(conn: sqlite3.Connection, patient_id: str, issuer: str | None) -> list[ReleasedBatch]:
    """Batches of the identity (``issuer`` None: every issuer) that left or may have left: acknowledged
    by the destination, or whose upload started (a run killed after the last byte and before the
    acknowledgement leaves the central host holding it)."""
    where, args = ("", ()) if issuer is None else (" AND b.issuer = ?", (issuer,))
    rows = conn.execute(
        f"""SELECT b.batch_id, b.study_uid, b.issuer, b.pseudonym, b.state, b.created_at FROM batches b
            WHERE b.patient_id = ?{where}
              AND (b.state = 'acknowledged' OR b.acknowledged_at IS NOT NULL OR b.sending_at IS NOT NULL
                   OR EXISTS (SELECT 1 FROM uploads u WHERE u.batch_id = b.batch_id))
            ORDER BY b.created_at, b.batch_id""",
        (patient_id, *args),
    ).fetchall()
    return [ReleasedBatch(*r) for r in rows]


def batch_pseudonyms(conn: sqlite3.Connection, patient_id: str, issuer: str | None) -> list[str]:
    """Pseudonyms of every batch ever made for the identity (``issuer`` None: every issuer)."""
    where, args = ("", ()) if issuer is None else (" AND issuer = ?", (issuer,))
    rows = conn.execute(f"SELECT DISTINCT pseudonym FROM batches WHERE patient_id = ?{where} ORDER BY 1",
                        (patient_id, *args)).fetchall()
    return [r[0] for r in rows]


def needs_request(conn: sqlite3.Connection, pseudonym: str) -> bool:
    """True unless a request for the pseudonym was queued after its last batch was made and
    after the last one was sent (a pseudonym released again after an earlier request needs a
    new one)."""
    row = conn.execute(
        """SELECT 1 FROM withdrawal_requests w WHERE w.pseudonym = ?
             AND w.created_at > COALESCE((SELECT MAX(MAX(created_at, COALESCE(sending_at, ''),
                                                         COALESCE(acknowledged_at, '')))
                                          FROM batches WHERE pseudonym = ?), '')""",
        (pseudonym, pseudonym),
    ).fetchone()
    return row is None


def batch_identities(conn: sqlite3.Connection, study_uid: str) -> list[tuple[str, str]]:
    """(patient ID, issuer) of the study's batches that are not cancelled."""
    rows = conn.execute("SELECT DISTINCT patient_id, issuer FROM batches WHERE study_uid = ? AND state != 'cancelled'",
                        (study_uid,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def queue_withdrawal_request(
    conn: sqlite3.Connection, pseudonym: str, created_at: str, payload: str, signature: str, signature_format: str
) -> bool:
    """Queue a request for the pseudonym unless :func:`needs_request` says one covers it. True if queued now."""
    if not needs_request(conn, pseudonym):
        return False
    conn.execute(
        """INSERT INTO withdrawal_requests (pseudonym, created_at, payload, signature, signature_format)
           VALUES (?, ?, ?, ?, ?)""",
        (pseudonym, created_at, payload, signature, signature_format),
    )
    return True


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
class StudyPatient:
    """The eligible instances of one study that name one identity (local data)."""

    study_uid: str
    patient_id: str | None
    issuer: str
    instances: int


def eligible_study_patients(conn: sqlite3.Connection, study_uids: Sequence[str] | None = None) -> list[StudyPatient]:
    """Every eligible indexed study (or those of ``study_uids``), one row per identity its
    instances name. Call it in the same snapshot as the consent it is decided with."""
    where, args = _in("study_uid", study_uids)
    rows = conn.execute(
        f"""SELECT study_uid, patient_id, issuer, COUNT(*) FROM instances
            WHERE state = 'indexed' AND eligible = 1 AND study_uid IS NOT NULL{where}
            GROUP BY study_uid, patient_id, issuer ORDER BY study_uid""", args).fetchall()
    return [StudyPatient(r[0], r[1], r[2], r[3]) for r in rows]


def registry_entries(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(Patient ID, issuer as recorded, number of records) of every registry entry."""
    rows = conn.execute(
        "SELECT patient_id, issuer, COUNT(*) FROM consent_records GROUP BY patient_id, issuer ORDER BY issuer, patient_id")
    return [(r[0], r[1], r[2]) for r in rows.fetchall()]


def records_of_entry(conn: sqlite3.Connection, patient_id: str) -> list[Record]:
    """Every record of the Patient ID, under any issuer, in the order recorded."""
    rows = conn.execute(f"SELECT {_RECORD_COLS} FROM consent_records WHERE patient_id = ? ORDER BY id", (patient_id,))
    return [Record(*r) for r in rows.fetchall()]


def without_patient_id(conn: sqlite3.Connection) -> dict[str, int]:
    """Indexed instances that carry no Patient ID: all, eligible, and their eligible studies."""
    row = conn.execute(
        """SELECT COUNT(*), COALESCE(SUM(eligible = 1), 0),
                  COUNT(DISTINCT CASE WHEN eligible = 1 THEN study_uid END)
           FROM instances WHERE state = 'indexed' AND (patient_id IS NULL OR trim(patient_id) = '')""").fetchone()
    return {"instances": row[0], "eligible_instances": row[1], "eligible_studies": row[2]}
