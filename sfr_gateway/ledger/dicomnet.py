"""SQL of the DICOM network side: the listener's refusals, what ``pull`` asked and received, and
which received files may be removed once released (migration 0006)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .db import Ledger, insert_event, utcnow

# ---------------------------------------------------------------------------------------------
# listener


def record_refusal(ledger: Ledger, calling_ae: str, address: str, sop_class_uid: str, sop_instance_uid: str,
                   status: int, reason: str, detail: str = "") -> None:
    """One C-STORE answered with a failure or warning status (UIDs, AE titles and reasons only)."""
    with ledger.transaction() as conn:
        conn.execute(
            """INSERT INTO dicom_refusals (at, calling_ae, address, sop_class_uid, sop_instance_uid, status, reason,
                                          detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (utcnow(), calling_ae, address, sop_class_uid, sop_instance_uid, status, reason, detail[:500]),
        )


def refusals(ledger: Ledger, limit: int = 1000) -> list[dict[str, Any]]:
    """The most recent refusals, newest first."""
    cols = ("at", "calling_ae", "address", "sop_class_uid", "sop_instance_uid", "status", "reason", "detail")
    rows = ledger.conn.execute(f"SELECT {', '.join(cols)} FROM dicom_refusals ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(zip(cols, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------------------------------
# pull


@dataclass(frozen=True)
class PulledStudy:
    """What the ledger remembers of one study ``pull`` asked for."""

    study_uid: str
    state: str
    attempts: int
    completed: int
    failed: int
    warning: int
    remaining: int
    error: str | None


def start_pull(ledger: Ledger, pacs: str, method: str) -> int:
    with ledger.transaction() as conn:
        cur = conn.execute("INSERT INTO pull_runs (started_at, pacs, method) VALUES (?, ?, ?)", (utcnow(), pacs, method))
        return int(cur.lastrowid or 0)


def finish_pull(ledger: Ledger, run_id: int, state: str, *, patients: int, studies_found: int, studies_asked: int,
                error: str | None, detail: dict[str, Any]) -> None:
    """Close a pull and append its event (counts only) in one transaction."""
    with ledger.transaction() as conn:
        conn.execute(
            """UPDATE pull_runs SET finished_at = ?, state = ?, patients = ?, studies_found = ?, studies_asked = ?,
                   error = ? WHERE id = ?""",
            (utcnow(), state, patients, studies_found, studies_asked, error, run_id),
        )
        insert_event(conn, "pull", "pull", state, detail)


def pulled_studies(ledger: Ledger, study_uids: Iterable[str]) -> dict[str, PulledStudy]:
    """The ledger's record of each of ``study_uids`` that ``pull`` already asked for."""
    out: dict[str, PulledStudy] = {}
    uids = list(study_uids)
    for i in range(0, len(uids), 500):
        chunk = uids[i:i + 500]
        marks = ",".join("?" for _ in chunk)
        for row in ledger.conn.execute(
                f"""SELECT study_uid, state, attempts, completed, failed, warning, remaining, error FROM pull_studies
                    WHERE study_uid IN ({marks})""", chunk):
            out[row[0]] = PulledStudy(*row)
    return out


def mark_asked(ledger: Ledger, run_id: int, study_uid: str, patient_id: str, issuer: str, study_date: str,
               series: Sequence[str], expected: int | None) -> None:
    """Before the retrieval: the study is 'pending' (a pull that dies here leaves it to retry)."""
    now = utcnow()
    with ledger.transaction() as conn:
        conn.execute(
            """INSERT INTO pull_studies (study_uid, patient_id, issuer, study_date, series, expected, state, attempts,
                                        first_run, last_run, asked_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)
               ON CONFLICT (study_uid) DO UPDATE SET state = 'pending', series = excluded.series,
                   expected = excluded.expected, last_run = excluded.last_run, asked_at = excluded.asked_at,
                   finished_at = NULL, error = NULL""",
            (study_uid, patient_id, issuer, study_date, json.dumps(list(series)), expected, run_id, run_id, now),
        )


def mark_result(ledger: Ledger, study_uid: str, state: str, completed: int, failed: int, warning: int, remaining: int,
                error: str | None = None, *, attempt: bool = False) -> None:
    """The final answer of one retrieval (sub-operation counts as the PACS reported them).
    ``attempt``: the PACS failed on this study (it counts towards giving up); a refused set-up or a
    dropped association says nothing about the study and must not use up its attempts."""
    with ledger.transaction() as conn:
        conn.execute(
            """UPDATE pull_studies SET state = ?, completed = ?, failed = ?, warning = ?, remaining = ?, error = ?,
                   finished_at = ?, attempts = attempts + ? WHERE study_uid = ?""",
            (state, completed, failed, warning, remaining, (error or "")[:500] or None, utcnow(), int(attempt),
             study_uid),
        )


def indexed_per_series(ledger: Ledger, series_uids: Iterable[str]) -> dict[str, int]:
    """How many instances of each series the index already holds (from any source)."""
    out: dict[str, int] = {}
    uids = list(series_uids)
    for i in range(0, len(uids), 500):
        chunk = uids[i:i + 500]
        marks = ",".join("?" for _ in chunk)
        out.update(ledger.conn.execute(
            f"""SELECT series_uid, COUNT(DISTINCT sop_instance_uid) FROM instances
                WHERE state = 'indexed' AND series_uid IN ({marks}) GROUP BY series_uid""", chunk).fetchall())
    return out


def last_event_id(ledger: Ledger) -> int:
    return int(ledger.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])


def listener_rejections_since(ledger: Ledger, event_id: int) -> list[dict[str, Any]]:
    """What our listener (``listen``, any process on this HOME) rejected after ``event_id``."""
    rows = ledger.conn.execute(
        "SELECT detail FROM events WHERE id > ? AND command = 'listen' AND action = 'reject' ORDER BY id", (event_id,))
    return [json.loads(r[0]) for r in rows]


def pull_runs(ledger: Ledger, limit: int = 20) -> list[dict[str, Any]]:
    cols = ("id", "started_at", "finished_at", "pacs", "method", "state", "patients", "studies_found",
            "studies_asked", "error")
    rows = ledger.conn.execute(f"SELECT {', '.join(cols)} FROM pull_runs ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(zip(cols, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------------------------------
# retention of received files


def removable_received(ledger: Ledger, root: bytes, acknowledged_before: str) -> list[bytes]:
    """Indexed files below ``root`` whose instance went out in a batch the destination
    acknowledged before ``acknowledged_before`` (ISO UTC)."""
    prefix = root.rstrip(b"/") + b"/"
    rows = ledger.conn.execute(
        """SELECT i.path FROM instances i
           JOIN releases r ON r.sop_instance_uid = i.sop_instance_uid AND r.state = 'packaged'
           JOIN batches b ON b.batch_id = r.batch_id AND b.state = 'acknowledged'
           WHERE i.state = 'indexed' AND substr(i.path, 1, ?) = ? AND b.acknowledged_at <= ?""",
        (len(prefix), prefix, acknowledged_before),
    )
    return [bytes(r[0]) for r in rows]


def mark_removed(ledger: Ledger, paths: Sequence[bytes]) -> None:
    """Files removed on purpose: 'missing' with the reason, so a scan does not count them as lost."""
    with ledger.transaction() as conn:
        conn.executemany(
            "UPDATE instances SET state = 'missing', eligible = 0, reason = 'removed-after-release' WHERE path = ?",
            [(p,) for p in paths],
        )
