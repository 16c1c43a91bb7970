"""Consent registry and release gate.

A patient (local ID + issuer) has a current status, ``unknown`` until something is recorded:

``informed``   the information notice was given on the effective date (non-opposition regime)
``consented``  explicit consent
``refused``    refusal / opposition
``withdrawn``  consent withdrawn: permanent; nothing of the patient is ever released again

History is append-only (the ledger refuses UPDATE and DELETE). What a record (Patient ID and
issuer as recorded) applies to among the identities the exports carry is decided in one place,
``sfr_gateway.consent.identity``; an identity's current status is the latest record that applies
to it (ties: the last recorded); a withdrawal overrides everything. The gate, coverage and the
patient list are in ``sfr_gateway.consent.gate``; what a refusal or withdrawal does to batches
and withdrawal requests in ``sfr_gateway.consent.withdrawal``.

Release policy (``Config.consent``): ``explicit`` releases ``consented`` patients only;
``non-opposition`` also releases patients ``informed`` at least ``delay_days`` days before
``today`` (an explicit ``consented`` is releasable in both modes). The clock is always passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto.signkey import SigningKey
from ..errors import ConsentError
from ..home.config import ConsentPolicy
from ..ledger import Ledger
from ..ledger import consent as sql
from ..ledger.db import insert_event
from .identity import RESTRICTIONS, SCOPE_ALL, Registry, Resolution
from .withdrawal import restrict

log = logging.getLogger(__name__)

STATUSES = ("unknown", "informed", "consented", "refused", "withdrawn")
MODES = ("explicit", "non-opposition")
MAX_ID_LENGTH = 64  # DICOM LO, the VR of PatientID and IssuerOfPatientID
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Why an eligible study is not releasable (keys of coverage's ``waiting``).
WAITING_REASONS = {
    "unknown": "no consent recorded",
    "informed": "informed only; explicit mode needs consented",
    "informed-in-delay": "informed; the non-opposition delay has not elapsed",
    "refused": "refused",
    "withdrawn": "withdrawn (permanent)",
    "no-patient-id": "no Patient ID (held: [consent] without_patient_id = \"hold\")",
}

PseudonymFor = Callable[[str, str], str]
"""``pseudonym_for(patient_id, issuer) -> pseudonym`` (from the de-identification engine)."""
Signer = Callable[[bytes], tuple[str, str]]
"""``sign(payload) -> (signature_format, signature_text)``."""
CancelBatches = Callable[[Any, str, "str | None"], int]
"""``cancel(conn, patient_id, issuer or None for every issuer) -> batches cancelled``, run inside
the withdrawal transaction."""


def minisign_signer(key: SigningKey, site_id: str) -> Signer:
    """Sign with the site key in minisign format (``ED``, BLAKE2b-prehashed): ``minisign -V`` and
    ``sfr_gateway.crypto.sign.verify_bytes`` check it with the site's public key. The trusted
    comment names the site and the payload's SHA-256."""
    from ..crypto.sign import sign_bytes

    def sign(payload: bytes) -> tuple[str, str]:
        comment = f"site:{site_id}\twithdrawal-request\tsha256:{hashlib.sha256(payload).hexdigest()}"
        return "minisign", sign_bytes(payload, key, comment)

    return sign


@dataclass(frozen=True)
class Withdrawer:
    """What a withdrawal needs besides the ledger: the site, the pseudonym and the signature."""

    site_id: str
    pseudonym_for: PseudonymFor
    signer: Signer
    cancel_batches: CancelBatches = sql.cancel_pending_batches


def check_policy(policy: ConsentPolicy) -> None:
    if policy.mode not in MODES:
        raise ConsentError(f"consent mode must be one of {', '.join(MODES)}")
    if policy.delay_days < 0:
        raise ConsentError("consent delay_days must be >= 0")


def classify(status: str, effective: str | None, withdrawn: bool, policy: ConsentPolicy, today: dt.date) -> str:
    """``releasable``, or the key of ``WAITING_REASONS`` that says why not."""
    if withdrawn or status == "withdrawn":
        return "withdrawn"
    if status == "consented":
        return "releasable"
    if status == "informed" and policy.mode == "non-opposition":
        if effective and dt.date.fromisoformat(effective) + dt.timedelta(days=policy.delay_days) <= today:
            return "releasable"
        return "informed-in-delay"
    return status if status in WAITING_REASONS else "unknown"


# ---------------------------------------------------------------------------------------------
# recording


def check_patient_id(value: str, what: str = "patient ID") -> str:
    """Strip and validate a local identifier; the error never repeats the value."""
    value = (value or "").strip()
    if not value and what == "patient ID":
        raise ConsentError(f"empty {what}")
    if len(value) > MAX_ID_LENGTH:
        raise ConsentError(f"{what} longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise ConsentError(f"control character in {what}")
    return value


def check_effective(effective: dt.date | None, today: dt.date) -> dt.date:
    if effective is None:
        return today
    if effective > today:
        raise ConsentError("the effective date is in the future")
    return effective


@dataclass(frozen=True)
class Change:
    """What recording one status did: ``recorded``, ``unchanged`` (same as the current record),
    ``withdrawn`` (newly withdrawn), or ``already-withdrawn`` (nothing recorded); what the record
    applies to; and, for a refusal or withdrawal, what it stopped and what had already left."""

    outcome: str
    status: str
    request_queued: bool = False
    batches_cancelled: int = 0
    requests_queued: int = 0
    resolution: Resolution | None = None
    released_batches: tuple[str, ...] = ()
    released_studies: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form (local data: the resolution names the local patient ID)."""
        return {"outcome": self.outcome, "status": self.status, "request_queued": self.request_queued,
                "batches_cancelled": self.batches_cancelled, "requests_queued": self.requests_queued,
                "applies_to": self.resolution.as_dict() if self.resolution else None,
                "already_released": {"studies": self.released_studies, "batches": list(self.released_batches)}}


def _withdrawn_already(reg: Registry, patient_id: str, issuer: str, status: str) -> bool:
    """True when a withdrawal already covers everything this record would apply to."""
    held = reg.withdrawals.get(patient_id, [])
    if any(not i or scope == SCOPE_ALL or i == issuer for i, scope in held):
        return True
    if status not in RESTRICTIONS and not issuer:
        target = reg.resolve(patient_id, "", status)
        return target.outcome == "resolved" and reg.standing(*target.identities[0]).withdrawn
    return False


def _apply(conn: Any, patient_id: str, issuer: str, status: str, effective: str, source: str, reference: str,
           operator: str, reason: str, withdrawer: Withdrawer | None, declared: Sequence[str] = (),
           registry: Registry | None = None) -> Change:
    """Record one status inside the caller's write transaction (see ``consent.identity`` for
    what it applies to). ``registry``: loaded once by an import (with the site issuers) for all
    its lines, and kept up to date here; else it is loaded for this patient."""
    reg = registry or Registry.load(conn, declared, [patient_id], site_issuers=sql.site_issuers(conn))
    if _withdrawn_already(reg, patient_id, issuer, status):
        return Change("already-withdrawn", "withdrawn", resolution=reg.resolve(patient_id, issuer, status))
    scope = reg.restriction_scope(issuer) if status in RESTRICTIONS else ""
    resolution = reg.resolve(patient_id, issuer, status, scope)
    if status == "withdrawn" and withdrawer is None:
        raise ConsentError("recording a withdrawal needs the pseudonym secret and the site signing key")
    own = [r for r in reg.records.get(patient_id, ()) if r.issuer == issuer]  # sorted: the last one is current
    now = own[-1] if own else None
    if status != "withdrawn" and now is not None and \
            (now.status, now.effective, now.source, now.reference) == (status, effective, source, reference):
        return Change("unchanged", status, resolution=resolution)
    record_id = sql.append_record(conn, patient_id, issuer, status, effective, source, reference, operator, reason,
                                  scope)
    reg.add(sql.Record(record_id, patient_id, issuer, status, effective, "", source, reference, operator, reason,
                       scope))
    if status not in RESTRICTIONS:
        return Change("recorded", status, resolution=resolution)
    if status == "withdrawn":
        sql.add_withdrawal(conn, patient_id, issuer, effective, record_id)
        reg.withdrawals[patient_id].append((issuer, scope))
    else:  # a refusal older than a later consent (an old sheet re-imported) changes nothing today
        scanned = [(patient_id, i) for i in sorted(reg.index.get(patient_id, ()))]
        targets = scanned if scope == SCOPE_ALL and scanned else reg.restriction_targets(patient_id, issuer, scope)
        if not any(reg.standing(p, i).status == "refused" for p, i in targets):
            return Change("recorded", status, resolution=resolution)
    done = restrict(conn, reg, patient_id, issuer, status, scope, withdrawer)
    return Change("withdrawn" if status == "withdrawn" else "recorded", status, done.requests_queued > 0,
                  done.batches_cancelled, done.requests_queued, resolution, done.released_batches,
                  done.released_studies)


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
        change = _apply(conn, patient_id, issuer, status, when, source, reference, operator, reason, withdrawer,
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
    from .gate import NO_PATIENT_ID, decide

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
    from .gate import NO_PATIENT_ID, decide_studies

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
    from .gate import decide

    identities = set(sql.batch_identities(conn, study_uid))
    identities |= {(s.patient_id or "", s.issuer) for s in sql.eligible_study_patients(conn, [study_uid])}
    reg = Registry.load(conn, policy.issuers, [p for p, _ in identities])
    return bool(identities) and all(decide(reg.standing(p, i), p, policy, today) == "releasable"
                                    for p, i in identities)


def is_releasable(ledger: Ledger, patient_id: str, issuer: str, policy: ConsentPolicy, today: dt.date) -> bool:
    """True when the policy lets the patient's eligible studies be released today."""
    return release_basis(ledger, patient_id, issuer, policy, today) is not None


# ---------------------------------------------------------------------------------------------
# the gate (sfr_gateway.consent.gate), kept reachable from here


def gate(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> Any:
    """Decide every eligible study in one read snapshot: see ``consent.gate.gate``."""
    from .gate import gate as decide_all

    return decide_all(ledger, policy, today)


def releasable_studies(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[str]:
    """Study UIDs the gate lets through today."""
    return sorted({s.study_uid for s in gate(ledger, policy, today).releasable})


def coverage(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """Consent coverage of eligible studies (counts only): see ``consent.gate.coverage``."""
    from .gate import coverage as cover

    return cover(ledger, policy, today)


def list_patients(ledger: Ledger, status: str | None = None, *, policy: ConsentPolicy | None = None,
                  today: dt.date | None = None) -> list[Any]:
    """Registry entries and identities with eligible studies (local admin use only); ``today``
    decides ``releasable`` (default: the local date)."""
    from .gate import list_patients as rows

    if status is not None and status not in STATUSES:
        raise ConsentError(f"unknown status; use one of {', '.join(STATUSES)}")
    return rows(ledger, policy or ConsentPolicy(), today or dt.date.today(), status)


def releasable_identities(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[tuple[str, str]]:
    """Every identity whose consent lets it through today: see ``consent.gate.releasable_identities``."""
    from .gate import releasable_identities as identities

    return identities(ledger, policy, today)


def show(ledger: Ledger, patient_id: str, issuer: str | None, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """One Patient ID (``issuer`` None: under every issuer) or identity: see ``consent.gate.show``."""
    from .gate import show as view

    return view(ledger, patient_id, issuer, policy, today)


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
    from ..errors import IntegrityError

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


def import_csv(
    ledger: Ledger,
    path: Path,
    *,
    today: dt.date,
    all_or_nothing: bool = False,
    withdrawer: Withdrawer | None = None,
    operator: str = "",
    history: bool = False,
    issuers: Sequence[str] = (),
) -> Any:
    """Import a consent CSV; see ``sfr_gateway.consent.csvimport`` (returns its ImportReport).

    ``history``: a patient may have several lines with different dates (applied in date order);
    by default any two lines of one patient with different statuses are rejected.
    """
    from .csvimport import import_file

    return import_file(ledger, Path(path), today=today, all_or_nothing=all_or_nothing, withdrawer=withdrawer,
                       operator=operator, history=history, issuers=issuers)
