"""Consent registry and release gate.

A patient (local ID + issuer) has a current status, ``unknown`` until something is recorded:

``informed``   the information notice was given on the effective date (non-opposition regime)
``consented``  explicit consent
``refused``    refusal / opposition
``withdrawn``  consent withdrawn: permanent; nothing of the patient is ever released again

History is append-only (the ledger refuses UPDATE and DELETE). The current status is the record
with the latest effective date (ties: the last recorded); a withdrawal overrides everything.

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
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConsentPolicy
from .errors import ConsentError
from .keys import SigningKey
from .ledger import Ledger
from .ledger import consent as sql
from .ledger.db import insert_event, utcnow

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
}

PseudonymFor = Callable[[str, str], str]
"""``pseudonym_for(patient_id, issuer) -> pseudonym`` (from the de-identification engine)."""
Signer = Callable[[bytes], tuple[str, str]]
"""``sign(payload) -> (signature_format, signature_text)``."""
CancelBatches = Callable[[Any, str, str], int]
"""``cancel(conn, patient_id, issuer) -> batches cancelled``, run inside the withdrawal transaction."""


def minisign_signer(key: SigningKey, site_id: str) -> Signer:
    """Sign with the site key in minisign format (``ED``, BLAKE2b-prehashed): ``minisign -V`` and
    ``sfr_gateway.crypto.sign.verify_bytes`` check it with the site's public key. The trusted
    comment names the site and the payload's SHA-256."""
    from .crypto.sign import sign_bytes

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
    ``withdrawn`` (newly withdrawn), or ``already-withdrawn`` (nothing recorded)."""

    outcome: str
    status: str
    request_queued: bool = False
    batches_cancelled: int = 0


def _apply(conn: Any, patient_id: str, issuer: str, status: str, effective: str, source: str, reference: str,
           operator: str, reason: str, withdrawer: Withdrawer | None) -> Change:
    """Record one status inside the caller's write transaction."""
    if sql.is_withdrawn(conn, patient_id, issuer):
        return Change("already-withdrawn", "withdrawn")
    if status == "withdrawn":
        if withdrawer is None:
            raise ConsentError("recording a withdrawal needs the pseudonym secret and the site signing key")
        record_id = sql.append_record(conn, patient_id, issuer, status, effective, source, reference, operator, reason)
        sql.add_withdrawal(conn, patient_id, issuer, effective, record_id)
        cancelled = withdrawer.cancel_batches(conn, patient_id, issuer)
        pseudonym = withdrawer.pseudonym_for(patient_id, issuer)
        created = utcnow()
        payload = canonical_json({
            "type": "sfr-gateway/withdrawal-request", "version": 1, "site": withdrawer.site_id,
            "pseudonym": pseudonym, "request_id": uuid.uuid4().hex, "created_at": created,
        })
        fmt, signature = withdrawer.signer(payload.encode("utf-8"))
        queued = sql.queue_withdrawal_request(conn, pseudonym, created, payload, signature, fmt)
        log.info("withdrawal recorded for pseudonym %s: %d pending batches cancelled", pseudonym, cancelled)
        return Change("withdrawn", status, queued, cancelled)
    now = sql.current(conn, patient_id, issuer)
    if now is not None and (now.status, now.effective, now.source, now.reference) == (status, effective, source, reference):
        return Change("unchanged", status)
    sql.append_record(conn, patient_id, issuer, status, effective, source, reference, operator, reason)
    return Change("recorded", status)


def canonical_json(obj: dict[str, Any]) -> str:
    """Sorted keys, no spaces, ASCII: the exact bytes that are signed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


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
) -> Change:
    """Record a status for one patient (``effective`` defaults to ``today``).

    Raises ConsentError for an unknown status, an empty or invalid ID, a future date, or any
    status other than ``withdrawn`` for a withdrawn patient (a withdrawal is permanent).
    """
    if status not in STATUSES:
        raise ConsentError(f"unknown status; use one of {', '.join(STATUSES)}")
    patient_id = check_patient_id(patient_id)
    issuer = check_patient_id(issuer, "issuer")
    when = check_effective(effective, today).isoformat()
    with ledger.transaction() as conn:
        change = _apply(conn, patient_id, issuer, status, when, source, reference, operator, reason, withdrawer)
        if change.outcome == "already-withdrawn" and status != "withdrawn":
            raise ConsentError("the patient has withdrawn; a withdrawal is permanent and cannot be overridden")
        insert_event(conn, "consent", "withdraw" if status == "withdrawn" else "set", change.outcome, {
            "status": status, "count": 0 if change.outcome in ("unchanged", "already-withdrawn") else 1,
            "requests_queued": int(change.request_queued), "batches_cancelled": change.batches_cancelled,
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
) -> Change:
    """Withdraw a patient for good: record it, cancel pending batches, queue one signed request
    naming only the pseudonym. Withdrawing again changes nothing and queues nothing."""
    return set_status(ledger, patient_id, "withdrawn", issuer=issuer, effective=effective, source=source,
                      reference=reference, operator=operator, reason=reason, today=today, withdrawer=withdrawer)


def current_status(ledger: Ledger, patient_id: str, issuer: str = "") -> str:
    """The patient's status now (``unknown`` when nothing is recorded)."""
    with ledger.snapshot() as conn:
        if sql.is_withdrawn(conn, patient_id, issuer):
            return "withdrawn"
        rec = sql.current(conn, patient_id, issuer)
    return rec.status if rec else "unknown"


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
    """The basis for releasing the patient's studies today, or None when they are not releasable.

    Accepts a Ledger (reads in its own snapshot) or an open connection (the batch code calls it
    inside the transaction that creates or sends a batch, so a concurrent withdrawal cannot slip by).
    """
    check_policy(policy)
    if isinstance(conn_or_ledger, Ledger):
        with conn_or_ledger.snapshot() as conn:
            return release_basis(conn, patient_id, issuer, policy, today)
    conn = conn_or_ledger
    withdrawn = sql.is_withdrawn(conn, patient_id, issuer)
    rec = sql.current(conn, patient_id, issuer)
    if rec is None or classify(rec.status, rec.effective, withdrawn, policy, today) != "releasable":
        return None
    return ReleaseBasis(rec.status, rec.effective, policy.mode)


def is_releasable(ledger: Ledger, patient_id: str, issuer: str, policy: ConsentPolicy, today: dt.date) -> bool:
    """True when the policy lets the patient's eligible studies be released today."""
    return release_basis(ledger, patient_id, issuer, policy, today) is not None


# ---------------------------------------------------------------------------------------------
# the gate


@dataclass(frozen=True)
class GateStudy:
    """An eligible study and the gate's decision (local data: holds the local patient ID)."""

    study_uid: str
    patient_id: str | None
    issuer: str
    status: str
    effective: str | None
    decision: str  # releasable, or a WAITING_REASONS key
    instances: int


@dataclass
class Gate:
    """The gate's decision over every eligible study, taken from one ledger snapshot."""

    policy: ConsentPolicy
    today: dt.date
    studies: list[GateStudy] = field(default_factory=list)

    @property
    def releasable(self) -> list[GateStudy]:
        return [s for s in self.studies if s.decision == "releasable"]

    @property
    def waiting(self) -> list[GateStudy]:
        return [s for s in self.studies if s.decision != "releasable"]


def gate(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> Gate:
    """Decide every eligible study in one read snapshot (study list and consent together).

    A study whose instances name several patients is releasable only if every one of them is.
    """
    check_policy(policy)
    result = Gate(policy, today)
    with ledger.snapshot() as conn:
        rows = sql.eligible_studies_with_consent(conn)
    by_study: dict[str, list[GateStudy]] = defaultdict(list)
    for r in rows:
        decision = classify(r.status, r.effective, r.withdrawn, policy, today)
        if r.patient_id is None or not r.patient_id.strip():
            decision = "unknown"
        by_study[r.study_uid].append(GateStudy(r.study_uid, r.patient_id, r.issuer,
                                               "withdrawn" if r.withdrawn else r.status, r.effective,
                                               decision, r.instances))
    for parts in by_study.values():
        blocked = [p for p in parts if p.decision != "releasable"]
        if blocked and len(parts) > 1:
            parts = [GateStudy(p.study_uid, p.patient_id, p.issuer, p.status, p.effective, blocked[0].decision,
                               p.instances) for p in parts]
        result.studies.extend(parts)
    return result


def releasable_studies(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[str]:
    """Study UIDs the gate lets through today."""
    return sorted({s.study_uid for s in gate(ledger, policy, today).releasable})


def coverage(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """Consent coverage of eligible studies: counts only, no patient values (safe for JSON/logs)."""
    g = gate(ledger, policy, today)
    with ledger.snapshot() as conn:
        mismatches = sql.issuer_mismatches(conn)
    studies = {s.study_uid for s in g.studies}
    releasable = {s.study_uid for s in g.releasable}
    waiting_studies: Counter[str] = Counter()
    waiting_patients: Counter[str] = Counter()
    upcoming: Counter[str] = Counter()
    seen_patients: set[tuple[str | None, str]] = set()
    for s in g.waiting:
        waiting_studies[s.decision] += 1
        if (s.patient_id, s.issuer) not in seen_patients:
            seen_patients.add((s.patient_id, s.issuer))
            waiting_patients[s.decision] += 1
        if s.decision == "informed-in-delay" and s.effective:
            ready = dt.date.fromisoformat(s.effective) + dt.timedelta(days=policy.delay_days)
            upcoming[ready.isoformat()] += 1
    n, m = len(releasable), len(studies)
    percent = (100 * n // m) if m else 0
    return {
        "mode": policy.mode,
        "delay_days": policy.delay_days,
        "today": today.isoformat(),
        "eligible_studies": m,
        "releasable_studies": n,
        "percent": percent,
        "summary": f"{n:,} of {m:,} eligible studies ({percent}%) releasable",
        "waiting_studies": dict(sorted(waiting_studies.items())),
        "waiting_patients": dict(sorted(waiting_patients.items())),
        "releasable_on": dict(sorted(upcoming.items())),
        "issuer_mismatches": mismatches,
    }


def known_issuers(ledger: Ledger, patient_id: str) -> list[str]:
    """Issuers of Patient ID under which the index holds ``patient_id``."""
    with ledger.snapshot() as conn:
        return sql.known_issuers(conn, patient_id)


def list_patients(ledger: Ledger, status: str | None = None) -> list[sql.PatientConsent]:
    """Patients known to the registry or with eligible studies (local admin use only)."""
    if status is not None and status not in STATUSES:
        raise ConsentError(f"unknown status; use one of {', '.join(STATUSES)}")
    with ledger.snapshot() as conn:
        return sql.patients(conn, [status] if status else None)


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
    from .crypto.sign import verify_bytes
    from .errors import IntegrityError

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
) -> Any:
    """Import a consent CSV; see ``sfr_gateway.consent_csv`` (returns its ImportReport).

    ``history``: a patient may have several lines with different dates (applied in date order);
    by default any two lines of one patient with different statuses are rejected.
    """
    from .consent_csv import import_file

    return import_file(ledger, Path(path), today=today, all_or_nothing=all_or_nothing, withdrawer=withdrawer,
                       operator=operator, history=history)
