"""Record one consent status inside the caller's write transaction: what it applies to (the
identity rule), whether it changes anything, and, for a refusal or withdrawal, what it stops
and which withdrawal requests it queues. ``set_status`` and the CSV import both record here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConsentError
from ..ledger import consent as sql
from .identity import RESTRICTIONS, SCOPE_ALL, Registry, Resolution
from .withdrawal import Withdrawer, restrict


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


def apply_record(conn: Any, patient_id: str, issuer: str, status: str, effective: str, source: str, reference: str,
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
