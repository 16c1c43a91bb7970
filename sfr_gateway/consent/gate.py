"""The release gate and what it reports: the decision per eligible study, coverage, the patient
list and one patient's view, all from one ledger snapshot and one identity rule
(:mod:`sfr_gateway.consent.identity`).

A study whose instances name several identities is releasable only if every one of them is.
Instances without a Patient ID follow ``[consent] without_patient_id``: ``hold`` (default: never
released, counted as ``no-patient-id``) or ``release`` (the site's documented choice).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..home.config import ConsentPolicy
from ..ledger import Ledger
from ..ledger import consent as sql
from .identity import RESTRICTIONS, Registry, Resolution, Standing
from .policy import check_policy, classify

NO_PATIENT_ID = "no-patient-id"


def decide(standing: Standing, patient_id: str | None, policy: ConsentPolicy, today: dt.date) -> str:
    """``releasable`` or the waiting reason of one identity."""
    if patient_id is None or not patient_id.strip():
        return "releasable" if policy.without_patient_id == "release" else NO_PATIENT_ID
    return classify(standing.status, standing.effective, standing.withdrawn, policy, today)


@dataclass(frozen=True)
class GateStudy:
    """An eligible study's instances of one identity and the gate's decision (local data)."""

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
    registry: Registry | None = field(default=None, repr=False)

    @property
    def releasable(self) -> list[GateStudy]:
        return [s for s in self.studies if s.decision == "releasable"]

    @property
    def waiting(self) -> list[GateStudy]:
        return [s for s in self.studies if s.decision != "releasable"]

    def identities_of(self, study_uid: str) -> list[tuple[str, str]]:
        """Every (patient ID, issuer) whose eligible instances are in the study ('' for none)."""
        return [(s.patient_id or "", s.issuer) for s in self.studies if s.study_uid == study_uid]


def decide_studies(conn: Any, policy: ConsentPolicy, today: dt.date, study_uids: list[str] | None = None,
                   registry: Registry | None = None) -> Gate:
    """The gate over every eligible study (or ``study_uids``), inside the caller's snapshot or
    write transaction (the packaging re-check calls it in the transaction that makes a batch)."""
    check_policy(policy)
    rows = sql.eligible_study_patients(conn, study_uids)
    if registry is None:
        pids = None if study_uids is None else [r.patient_id for r in rows if r.patient_id]
        registry = Registry.load(conn, policy.issuers, pids)
    result = Gate(policy, today, registry=registry)
    by_study: dict[str, list[GateStudy]] = defaultdict(list)
    for r in rows:
        standing = registry.standing(r.patient_id or "", r.issuer)
        decision = decide(standing, r.patient_id, policy, today)
        by_study[r.study_uid].append(GateStudy(r.study_uid, r.patient_id, r.issuer, standing.status,
                                               standing.effective, decision, r.instances))
    for parts in by_study.values():
        blocked = [p for p in parts if p.decision != "releasable"]
        if blocked and len(parts) > 1:
            parts = [GateStudy(p.study_uid, p.patient_id, p.issuer, p.status, p.effective, blocked[0].decision,
                               p.instances) for p in parts]
        result.studies.extend(parts)
    return result


def gate(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> Gate:
    """Decide every eligible study in one read snapshot (study list and consent together)."""
    with ledger.snapshot() as conn:
        return decide_studies(conn, policy, today)


def coverage(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """Consent coverage of eligible studies: counts only, no patient values (safe for JSON/logs)."""
    with ledger.snapshot() as conn:
        g = decide_studies(conn, policy, today)
        nopid = sql.without_patient_id(conn)
    assert g.registry is not None  # noqa: S101 - decide_studies always sets it
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
    unresolved = g.registry.unresolved()
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
        "unresolved_records": unresolved,
        "issuer_mismatches": unresolved.get("issuer-mismatch", 0),
        "without_patient_id": {**nopid, "policy": policy.without_patient_id},
    }


@dataclass(frozen=True)
class PatientRow:
    """One line of ``consent list`` (local data): a registry entry (Patient ID and issuer as
    recorded) or an identity of the index, with what it resolves to."""

    patient_id: str
    issuer: str
    status: str
    effective: str | None
    withdrawn: bool
    records: int
    eligible_studies: int
    releasable: bool
    applies_to: dict[str, Any]


def list_patients(ledger: Ledger, policy: ConsentPolicy, today: dt.date, status: str | None = None) -> list[PatientRow]:
    """Registry entries and identities with eligible studies; for an index identity the status
    that applies to it, for a registry entry that is not one, its own latest record and what it
    resolves to."""
    with ledger.snapshot() as conn:
        g = decide_studies(conn, policy, today)
        entries = sql.registry_entries(conn)
    reg = g.registry
    assert reg is not None  # noqa: S101 - decide_studies always sets it
    studies: dict[tuple[str, str], set[str]] = defaultdict(set)
    decisions: dict[tuple[str, str], bool] = {}
    for s in g.studies:
        if s.patient_id:
            key = (s.patient_id, s.issuer)
            studies[key].add(s.study_uid)
            decisions[key] = decisions.get(key, True) and s.decision == "releasable"
    counts = {(p, i): n for p, i, n in entries}
    rows: list[PatientRow] = []
    for key in sorted(set(counts) | set(studies), key=lambda k: (k[1], k[0])):
        pid, issuer = key
        own = [r for r in reg.records.get(pid, []) if r.issuer == issuer]
        latest = own[-1] if own else None
        # an identity of the index: what the gate decides on; else the registry entry's own view
        shown = reg.standing(pid, issuer, entry=key not in studies)
        resolution = (reg.resolve(pid, issuer, latest.status, latest.scope) if latest
                      else Resolution("identity", (key,)))
        if key in decisions:  # an identity with eligible studies: what the gate does with them
            releasable = decisions[key]
        elif resolution.outcome == "ambiguous" or resolution.elsewhere:
            releasable = False  # applies to no scanned identity: never claim otherwise
        elif resolution.identities and all(i in decisions for i in resolution.identities):
            releasable = all(decisions[i] for i in resolution.identities)
        else:  # nothing scanned yet: whether its consent allows release
            releasable = decide(shown, pid, policy, today) == "releasable"
        rows.append(PatientRow(pid, issuer, shown.status, shown.effective, shown.withdrawn, counts.get(key, 0),
                               len(studies.get(key, ())), releasable, resolution.as_dict()))
    if status:
        rows = [r for r in rows if r.status == status]
    return rows


def releasable_identities(ledger: Ledger, policy: ConsentPolicy, today: dt.date) -> list[tuple[str, str]]:
    """(Patient ID, issuer) of every identity whose consent lets it through today, scanned or
    not: the identities the index holds for a recorded Patient ID and those its records resolve
    to (``pull`` asks the PACS for these). Same rule as the gate."""
    with ledger.snapshot() as conn:
        reg = Registry.load(conn, policy.issuers)
    out: set[tuple[str, str]] = set()
    for pid, recs in reg.records.items():
        candidates = {(pid, i) for i in reg.index.get(pid, set())}
        for rec in recs:
            if rec.status not in RESTRICTIONS:
                candidates |= set(reg.resolve(pid, rec.issuer, rec.status, rec.scope).identities)
        out |= {c for c in candidates if decide(reg.standing(*c), pid, policy, today) == "releasable"}
    return sorted(out)


def show(ledger: Ledger, patient_id: str, issuer: str | None, policy: ConsentPolicy, today: dt.date) -> dict[str, Any]:
    """One Patient ID (``issuer`` None: under every issuer) or one identity: the identities and
    what applies to each, whether the gate releases their studies today, and the history with
    what each record applies to. Local data (holds the local ID)."""
    with ledger.snapshot() as conn:
        reg = Registry.load(conn, policy.issuers, [patient_id])
        mine = [s for s in decide_studies(conn, policy, today, registry=reg).studies if s.patient_id == patient_id]
        history = sql.records_of_entry(conn, patient_id)
    if issuer is not None:
        keys = [(patient_id, issuer)]
        history = [r for r in history if r.issuer == issuer or r.id in
                   {a.id for a in reg.applying_records(patient_id, issuer)}]
    else:  # every identity the index holds it under, and those its records resolve to
        keys = sorted({(patient_id, i) for i in reg.index.get(patient_id, set())}
                      | {ident for r in history if r.status not in RESTRICTIONS
                         for ident in reg.resolve(r.patient_id, r.issuer, r.status, r.scope).identities})
    identities = []
    for key in keys:
        standing = reg.standing(*key)
        studies = [s for s in mine if s.issuer == key[1]]
        verdict = classify(standing.status, standing.effective, standing.withdrawn, policy, today)
        if studies:
            releasable = all(s.decision == "releasable" for s in studies)
        else:
            releasable = verdict == "releasable"
        identities.append({"patient_id": key[0], "issuer": key[1], "status": standing.status,
                           "effective": standing.effective, "releasable": releasable,
                           "eligible_studies": len({s.study_uid for s in studies}),
                           "scanned": key[1] in reg.index.get(patient_id, set())})
    if identities:
        status = identities[0]["status"] if len(identities) == 1 else _worst(i["status"] for i in identities)
        releasable = all(i["releasable"] for i in identities)
    else:
        status, releasable = "unknown", False
    if not identities and history:  # recorded, but applied to nothing yet: say what was recorded
        status = reg.standing(patient_id, issuer or "", entry=True).status
    return {
        "patient_id": patient_id, "issuer": issuer if issuer is not None else "", "status": status,
        "releasable": releasable, "mode": policy.mode, "identities": identities,
        "history": [{"effective": r.effective, "status": r.status, "issuer": r.issuer, "recorded_at": r.recorded_at,
                     "source": r.source, "reference": r.reference, "operator": r.operator, "reason": r.reason,
                     "scope": r.scope, "applies_to": reg.resolve(r.patient_id, r.issuer, r.status, r.scope).as_dict(),
                     "describe": reg.resolve(r.patient_id, r.issuer, r.status, r.scope).describe()}
                    for r in history],
    }


_ORDER = ("withdrawn", "refused", "unknown", "informed", "consented")


def _worst(statuses: Any) -> str:
    """The most restrictive of several identities' statuses (a summary never overstates consent)."""
    return min(statuses, key=lambda s: _ORDER.index(s) if s in _ORDER else 0)


__all__ = ["Gate", "GateStudy", "NO_PATIENT_ID", "PatientRow", "RESTRICTIONS", "coverage", "decide",
           "decide_studies", "gate", "list_patients", "releasable_identities", "show"]
