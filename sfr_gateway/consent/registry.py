"""Consent registry and release gate: the public entry of ``consent/``.

A patient (local ID + issuer) has a current status, ``unknown`` until something is recorded:

``informed``   the information notice was given on the effective date (non-opposition regime)
``consented``  explicit consent
``refused``    refusal / opposition
``withdrawn``  consent withdrawn: permanent; nothing of the patient is ever released again

History is append-only (the ledger refuses UPDATE and DELETE). What a record (Patient ID and
issuer as recorded) applies to among the identities the exports carry is decided in one place,
``sfr_gateway.consent.identity``; an identity's current status is the latest record that applies
to it (ties: the last recorded); a withdrawal overrides everything. The gate, coverage and the
patient list are in ``sfr_gateway.consent.gate``; the statuses and checks in
``sfr_gateway.consent.policy``; recording one status in ``sfr_gateway.consent.record``; what a
refusal or withdrawal does to batches and withdrawal requests in ``sfr_gateway.consent.withdrawal``.
This module is the public entry to all of them (the CLI and the pipeline call it).

Release policy (``Config.consent``): ``explicit`` releases ``consented`` patients only;
``non-opposition`` also releases patients ``informed`` at least ``delay_days`` days before
``today`` (an explicit ``consented`` is releasable in both modes). The clock is always passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConsentError, IntegrityError
from ..home.config import ConsentPolicy
from ..ledger import Ledger
from ..ledger import consent as sql
from ..ledger.db import insert_event
from . import gate as _gate
from .csvimport import import_file
from .gate import NO_PATIENT_ID, decide, decide_studies
from .identity import Registry
from .policy import MODES, STATUSES, WAITING_REASONS, check_effective, check_patient_id, check_policy, classify
from .record import Change, apply_record
from .withdrawal import PseudonymFor, Signer, Withdrawer, minisign_signer

log = logging.getLogger(__name__)

def set_status(
    ledger: Ledger,
    patient_id: str,
    status: str,
    *,
    issuer: str = "",
    effective: dt.date | None = None,
    source: str = "manual",
    reference: str = "",
    operator: str = "",
    reason: str = "",
    today: dt.date,
    withdrawer: Withdrawer | None = None,
    issuers: Sequence[str] = (),
) -> Change:
    """Record a status for one patient (``effective`` defaults to ``today``); ``issuers`` are the
    site's declared issuers (``[site] issuers``: how a record without an issuer resolves).

    A refusal or withdrawal cancels what it must, reports the batches that already left, and
    queues signed withdrawal requests (a refusal only when something left; it needs
    ``withdrawer`` then). Raises ConsentError for an unknown status, an empty or invalid ID, a
    future date, or any status other than ``withdrawn`` for a withdrawn patient (permanent).
    """
    if status not in STATUSES:
        raise ConsentError(f"unknown status; use one of {', '.join(STATUSES)}")
    patient_id = check_patient_id(patient_id)
    issuer = check_patient_id(issuer, "issuer")
    when = check_effective(effective, today).isoformat()
    with ledger.transaction() as conn:
        change = apply_record(conn, patient_id, issuer, status, when, source, reference, operator, reason, withdrawer,
                        issuers)
        if change.outcome == "already-withdrawn" and status != "withdrawn":
            raise ConsentError("the patient has withdrawn; a withdrawal is permanent and cannot be overridden")
        insert_event(conn, "consent", "withdraw" if status == "withdrawn" else "set", change.outcome, {
            "status": status, "count": 0 if change.outcome in ("unchanged", "already-withdrawn") else 1,
            "requests_queued": change.requests_queued, "batches_cancelled": change.batches_cancelled,
            "applies": change.resolution.outcome if change.resolution else "",
            "already_released_batches": len(change.released_batches),
        })
    return change


def withdraw(
    ledger: Ledger,
    patient_id: str,
    withdrawer: Withdrawer,
    *,
    issuer: str = "",
    reason: str = "",
    effective: dt.date | None = None,
    source: str = "manual",
    reference: str = "",
    operator: str = "",
    today: dt.date,
    issuers: Sequence[str] = (),
) -> Change:
    """Withdraw a patient for good: record it, cancel pending batches, queue one signed request
    per pseudonym (only pseudonyms, never the local ID). Without an issuer (or under one the
    exports do not use) it covers the Patient ID under every issuer. Withdrawing again changes
    nothing and queues nothing."""
    return set_status(ledger, patient_id, "withdrawn", issuer=issuer, effective=effective, source=source,
                      reference=reference, operator=operator, reason=reason, today=today, withdrawer=withdrawer,
                      issuers=issuers)


def current_status(ledger: Ledger, patient_id: str, issuer: str = "", issuers: Sequence[str] = ()) -> str:
    """The registry entry's status now (``unknown`` when nothing is recorded): its own latest
    record, unless a later record that applies to it (a refusal without issuer...) or a
    withdrawal overrides it. What the gate decides for a scanned identity: ``consent show``."""
    with ledger.snapshot() as conn:
        reg = Registry.load(conn, issuers, [patient_id])
    return reg.standing(patient_id, issuer, entry=True).status


def history(ledger: Ledger, patient_id: str, issuer: str = "") -> list[sql.Record]:
    """Every record of the patient, oldest first."""
    with ledger.snapshot() as conn:
        return sql.history(conn, patient_id, issuer)


@dataclass(frozen=True)
class ReleaseBasis:
    """The consent a release rests on: what the batch manifest records (pseudonymised by its caller)."""

    status: str
    effective: str
    mode: str


def release_basis(
    conn_or_ledger: Ledger | Any, patient_id: str, issuer: str, policy: ConsentPolicy, today: dt.date
) -> ReleaseBasis | None:
    """The basis for releasing the identity's studies today, or None when they are not releasable.

    Accepts a Ledger (reads in its own snapshot) or an open connection (the batch code calls it
    inside the transaction that creates or sends a batch, so a concurrent withdrawal cannot slip by).
    """
    check_policy(policy)
    if isinstance(conn_or_ledger, Ledger):
        with conn_or_ledger.snapshot() as conn:
            return release_basis(conn, patient_id, issuer, policy, today)
    standing = Registry.load(conn_or_ledger, policy.issuers, [patient_id]).standing(patient_id, issuer)
    if decide(standing, patient_id, policy, today) != "releasable":
        return None
    if not (patient_id or "").strip():
        return ReleaseBasis(NO_PATIENT_ID, "", policy.mode)
    return ReleaseBasis(standing.status, standing.effective or "", policy.mode)


def study_release_basis(conn: Any, study_uid: str, patient_id: str, issuer: str, policy: ConsentPolicy,
                        today: dt.date) -> ReleaseBasis | None:
    """The basis for releasing the identity's instances of ``study_uid``, decided in the caller's
    transaction over every identity the study's eligible instances name (the gate's rule: all
    of them releasable), or None. The packaging calls it when it begins and when it finishes a
    batch, so a withdrawal of any patient of the study committed meanwhile stops the batch."""
    decided = decide_studies(conn, policy, today, [study_uid]).studies
    if not decided or any(s.decision != "releasable" for s in decided):
        return None
    mine = [s for s in decided if (s.patient_id or "", s.issuer) == (patient_id or "", issuer)]
    if not mine:
        return None
    if not (patient_id or "").strip():
        return ReleaseBasis(NO_PATIENT_ID, "", policy.mode)
    return ReleaseBasis(mine[0].status, mine[0].effective or "", policy.mode)


def batch_releasable(conn: Any, study_uid: str, policy: ConsentPolicy, today: dt.date) -> bool:
    """Whether a packaged batch of ``study_uid`` may be sent now: every patient of the study (its
    batches' and its eligible instances') is still releasable. Consent only, not selection: a
    batch whose sources left the export since is still sent. ``upload`` calls it in the
    transaction that marks the batch as being sent."""
    identities = set(sql.batch_identities(conn, study_uid))
    identities |= {(s.patient_id or "", s.issuer) for s in sql.eligible_study_patients(conn, [study_uid])}
    reg = Registry.load(conn, policy.issuers, [p for p, _ in identities])
    return bool(identities) and all(decide(reg.standing(p, i), p, policy, today) == "releasable"
                                    for p, i in identities)


def is_releasable(ledger: Ledger, patient_id: str, issuer: str, policy: ConsentPolicy, today: dt.date) -> bool:
    """True when the policy lets the patient's eligible studies be released today."""
    return release_basis(ledger, patient_id, issuer, policy, today) is not None


# ---------------------------------------------------------------------------------------------
# the gate (sfr_gateway.consent.gate), reachable from here


def gate(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> Any:
    """Decide every eligible study in one read snapshot: see ``consent.gate.gate``."""
    return _gate.gate(ledger, policy, today)


def releasable_studies(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[str]:
    """Study UIDs the gate lets through today."""
    return sorted({s.study_uid for s in gate(ledger, policy, today).releasable})


def coverage(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """Consent coverage of eligible studies (counts only): see ``consent.gate.coverage``."""
    return _gate.coverage(ledger, policy, today)


def list_patients(ledger: Ledger, status: str | None = None, *, policy: ConsentPolicy | None = None,
                  today: dt.date | None = None) -> list[Any]:
    """Registry entries and identities with eligible studies (local admin use only); ``today``
    decides ``releasable`` (default: the local date)."""
    if status is not None and status not in STATUSES:
        raise ConsentError(f"unknown status; use one of {', '.join(STATUSES)}")
    return _gate.list_patients(ledger, policy or ConsentPolicy(), today or dt.date.today(), status)


def releasable_identities(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[tuple[str, str]]:
    """Every identity whose consent lets it through today: see ``consent.gate.releasable_identities``."""
    return _gate.releasable_identities(ledger, policy, today)


def show(ledger: Ledger, patient_id: str, issuer: str | None, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """One Patient ID (``issuer`` None: under every issuer) or identity: see ``consent.gate.show``."""
    return _gate.show(ledger, patient_id, issuer, policy, today)


# ---------------------------------------------------------------------------------------------
# withdrawal requests (for the transport)


def withdrawal_requests(ledger: Ledger, state: str | None = "pending") -> list[sql.WithdrawalRequest]:
    """Queued withdrawal requests (pending ones by default), oldest first."""
    with ledger.snapshot() as conn:
        return sql.withdrawal_requests(conn, state)


def mark_withdrawal_request(ledger: Ledger, request_id: int, state: str, error: str | None = None) -> None:
    """The transport records a delivery attempt (``sent``, ``acknowledged``, or ``pending`` + error)."""
    if state not in ("pending", "sent", "acknowledged"):
        raise ConsentError("withdrawal request state must be pending, sent or acknowledged")
    with ledger.transaction() as conn:
        sql.mark_request(conn, request_id, state, error)
        insert_event(conn, "consent", "withdrawal-request", state, {"count": 1})


def verify_withdrawal_request(request: sql.WithdrawalRequest, public: Any) -> dict[str, Any]:
    """Check a request's minisign signature with the site's public key
    (``sfr_gateway.crypto.sign.PublicKey``); return the payload. ConsentError if it does not verify."""
    from ..crypto.sign import verify_bytes

    if request.signature_format != "minisign":
        raise ConsentError(f"unsupported withdrawal signature format {request.signature_format}")
    payload = request.payload.encode("utf-8")
    try:
        sig = verify_bytes(payload, request.signature, public)
    except (IntegrityError, ValueError):
        raise ConsentError("withdrawal request signature does not verify") from None
    if f"sha256:{hashlib.sha256(payload).hexdigest()}" not in sig.trusted_comment.split("\t"):
        raise ConsentError("withdrawal request signature does not verify (trusted comment)")
    return dict(json.loads(payload))


import_csv = import_file  # the registry's name for the CSV import (``consent.csvimport``)


__all__ = [
    "MODES", "NO_PATIENT_ID", "STATUSES", "WAITING_REASONS", "Change", "PseudonymFor", "ReleaseBasis", "Signer",
    "Withdrawer", "batch_releasable", "check_effective", "check_patient_id", "check_policy", "classify", "coverage",
    "current_status", "gate", "history", "import_csv", "is_releasable", "list_patients", "mark_withdrawal_request",
    "minisign_signer", "releasable_identities", "releasable_studies", "release_basis", "set_status", "show",
    "study_release_basis", "verify_withdrawal_request", "withdraw", "withdrawal_requests",
]
