"""One patient identity for consent: which exports' patients a consent record applies to.

The exports identify a patient by Patient ID + Issuer of Patient ID (an *identity*; the index
holds every one it scanned). People record consent by Patient ID, often without an issuer. This
module is the one place that decides what a record applies to; the gate, coverage, ``consent
set/withdraw/import/show/list``, the packaging re-check and the withdrawal requests all use it
(the README's "One patient identity" section says the same in prose, with examples).

*Site issuers*: those declared in ``config.toml`` (``[site] issuers``) and every issuer the index
holds. Records are of two kinds:

- **restrictions** (``refused``, ``withdrawn``): without an issuer, or under an issuer that was
  not a site issuer when recorded, they apply to the Patient ID under *every* issuer, now and
  later (scope ``all-issuers``, decided once when recorded and kept in the ledger, so a
  restriction never narrows). Under a site issuer they apply to that identity (scope ``issuer``).
- **the others** (``unknown``, ``informed``, ``consented``): under an issuer they apply to that
  identity exactly. Without an issuer they apply to the single identity they resolve to: the one
  issuer the index holds the ID under (when the site declares issuers: the one declared issuer the
  index holds it under, else the one declared issuer). Several: *ambiguous*, applied to none.
  None: *no match yet*; it stands for the ID without issuer until a scan finds the ID. This is recomputed on every decision, so a
  consent that resolved stops applying as soon as a scan finds the ID under a second issuer.

An identity's status is the latest (effective date, then last recorded) of the records that
apply to it; a withdrawal that applies to it is permanent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..ledger import consent as sql

RESTRICTIONS = frozenset({"refused", "withdrawn"})
SCOPE_ISSUER = "issuer"
SCOPE_ALL = "all-issuers"

Identity = tuple[str, str]
"""(Patient ID, Issuer of Patient ID) as the DICOM headers carry them ('' when absent)."""


@dataclass(frozen=True)
class Resolution:
    """What one record applies to now.

    ``outcome``: ``identity`` (its own issuer), ``resolved`` (no issuer, one identity),
    ``all-issuers`` (a restriction over every issuer), ``ambiguous`` or ``no-match-yet``
    (applied to nothing today). ``identities`` are the ones it applies to (for a record under an
    issuer with nothing scanned yet, the one it will apply to); ``issuers`` the candidates of an
    ambiguous record; ``scanned`` whether any of ``identities`` is in the index.
    """

    outcome: str
    identities: tuple[Identity, ...] = ()
    issuers: tuple[str, ...] = ()
    scanned: bool = True
    elsewhere: tuple[str, ...] = ()  # not scanned: the issuers the index holds the ID under instead

    @property
    def unresolved(self) -> bool:
        """True when the record reaches no scanned identity (coverage counts these)."""
        return self.outcome in ("ambiguous", "no-match-yet") or not self.scanned

    def describe(self, patient_id: str = "") -> str:
        """One line for an operator (holds the local ID only when given)."""
        who = f"{patient_id} " if patient_id else ""

        def names(ids: Iterable[Identity]) -> str:
            return ", ".join(f"{who}issuer {i!r}" if i else f"{who}without issuer" for _, i in ids)

        if self.outcome == "ambiguous":
            return ("NOT APPLIED (ambiguous): the exports hold this Patient ID under issuers "
                    + ", ".join(repr(i) for i in self.issuers) + "; record it again with --issuer")
        if self.outcome == "no-match-yet" and all(not i for _, i in self.identities):
            return ("NOT APPLIED yet (no match): no scanned study holds this Patient ID; it applies when a scan "
                    "finds it under exactly one issuer (or declare the site's issuer: [site] issuers)")
        if self.outcome == "all-issuers":
            known = names(self.identities) if self.identities else "none scanned yet"
            return f"applies to this Patient ID under every issuer (now: {known})"
        text = f"applies to {names(self.identities)}"
        if not self.scanned and self.elsewhere:
            return (text + "; NOT APPLIED to any scanned study: the exports hold this Patient ID under issuer "
                    + ", ".join(repr(i) for i in self.elsewhere) + " (pass --issuer to match them, or record it "
                    "without an issuer)")
        if not self.scanned:
            text += " (no scanned study holds it yet)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "unresolved": self.unresolved,
                "identities": [{"patient_id": p, "issuer": i} for p, i in self.identities],
                **({"candidate_issuers": list(self.issuers)} if self.issuers else {}),
                **({"index_issuers": list(self.elsewhere)} if self.elsewhere else {})}


@dataclass(frozen=True)
class Standing:
    """The consent that applies to one identity: its current status and how it got there."""

    status: str  # withdrawn when a withdrawal applies, else the latest applying record's status
    effective: str | None
    withdrawn: bool
    record_id: int | None  # the deciding record (None: nothing applies)


class Registry:
    """Consent records, withdrawals and the index's identities, from one ledger snapshot.

    Build it with :meth:`load` inside ``Ledger.snapshot()`` or a write transaction, together
    with anything else the same decision reads.
    """

    def __init__(self, records: Iterable[sql.Record], withdrawals: Iterable[tuple[str, str, str]],
                 index: dict[str, set[str]], site_issuers: Iterable[str], declared: Iterable[str] = ()) -> None:
        self.declared = tuple(dict.fromkeys(i.strip() for i in declared if i.strip()))
        self.site_issuers = frozenset(site_issuers) | frozenset(self.declared)
        self.index = index
        self.records: dict[str, list[sql.Record]] = defaultdict(list)
        for rec in records:
            self.records[rec.patient_id].append(rec)
        for recs in self.records.values():
            recs.sort(key=lambda r: (r.effective, r.id))
        self._targets: dict[str, Resolution | None] = {}
        self.withdrawals: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for pid, issuer, scope in withdrawals:
            self.withdrawals[pid].append((issuer, scope))

    @classmethod
    def load(cls, conn: Any, declared: Iterable[str] = (), patient_ids: Iterable[str] | None = None, *,
             site_issuers: Iterable[str] | None = None) -> Registry:
        """Read what resolution needs (every patient, or only ``patient_ids``). ``site_issuers``
        (``ledger.consent.site_issuers``, a pass over the index) is needed only to record a
        refusal or withdrawal (:meth:`restriction_scope`); deciding reads the scope kept with it."""
        pids = None if patient_ids is None else sorted({p for p in patient_ids if p})
        return cls(sql.records(conn, pids), sql.withdrawals(conn, pids), sql.index_issuers(conn, pids),
                   site_issuers or (), declared)

    # -- what a record applies to -------------------------------------------------------------

    def restriction_scope(self, issuer: str) -> str:
        """The scope a refusal or withdrawal recorded now under ``issuer`` gets (kept for good);
        the Registry must have been loaded with the site issuers."""
        return SCOPE_ISSUER if issuer and issuer in self.site_issuers else SCOPE_ALL

    def _no_issuer_target(self, patient_id: str) -> Resolution:
        held = self.index.get(patient_id, set())
        if self.declared:
            among = [i for i in self.declared if i in held] or list(self.declared)
        else:
            among = sorted(held)
        if len(among) == 1:
            return Resolution("resolved", ((patient_id, among[0]),), scanned=among[0] in held)
        if among:
            return Resolution("ambiguous", issuers=tuple(among))
        # nothing scanned, nothing declared: it stands for the ID as recorded (no issuer) until a
        # scan finds the ID (and then resolves it like any other)
        return Resolution("no-match-yet", ((patient_id, ""),), scanned=False)

    def identities_of(self, patient_id: str) -> list[Identity]:
        """Every identity of this Patient ID the index, the registry or the config knows."""
        issuers = set(self.index.get(patient_id, set())) | {r.issuer for r in self.records.get(patient_id, [])}
        issuers |= set(self.declared)
        return [(patient_id, i) for i in sorted(issuers)]

    def resolve(self, patient_id: str, issuer: str, status: str, scope: str = "") -> Resolution:
        """What a record (already recorded, or about to be) applies to now."""
        if status in RESTRICTIONS:
            if (scope or self.restriction_scope(issuer)) == SCOPE_ALL:
                return Resolution("all-issuers", tuple((p, i) for p, i in self.identities_of(patient_id)
                                                       if i in self.index.get(patient_id, set())))
            return Resolution("identity", ((patient_id, issuer),),
                              scanned=issuer in self.index.get(patient_id, set()))
        if not issuer:
            return self._no_issuer_target(patient_id)
        held = self.index.get(patient_id, set())
        if issuer in held:
            return Resolution("identity", ((patient_id, issuer),))
        return Resolution("no-match-yet", ((patient_id, issuer),), scanned=False, elsewhere=tuple(sorted(held)))

    def restriction_targets(self, patient_id: str, issuer: str, scope: str) -> list[Identity]:
        """Identities a restriction covers for its withdrawal request: every identity of the ID
        that is known anywhere (all-issuers), or its own."""
        if scope == SCOPE_ALL:
            return sorted(set(self.identities_of(patient_id)) | {(patient_id, issuer)})
        return [(patient_id, issuer)]

    # -- what applies to an identity ------------------------------------------------------------

    def _applies(self, rec: sql.Record, issuer: str, target: Resolution | None, entry: bool = False) -> bool:
        if entry and rec.issuer == issuer:
            return True
        if rec.status in RESTRICTIONS:
            return rec.issuer == issuer or not rec.issuer or rec.scope == SCOPE_ALL
        if rec.issuer:
            return rec.issuer == issuer
        return target is not None and len(target.identities) == 1 and target.identities[0][1] == issuer

    def _target_of(self, patient_id: str, recs: list[sql.Record]) -> Resolution | None:
        """Where the ID's records without issuer resolve (None: it has none), once per ID."""
        if patient_id not in self._targets:
            has = any(not r.issuer for r in recs)
            self._targets[patient_id] = self._no_issuer_target(patient_id) if has else None
        return self._targets[patient_id]

    def add(self, rec: sql.Record) -> None:
        """Take a record just appended in the caller's transaction into account."""
        recs = self.records[rec.patient_id]
        recs.append(rec)
        recs.sort(key=lambda r: (r.effective, r.id))
        self._targets.pop(rec.patient_id, None)

    def standing(self, patient_id: str, issuer: str, *, entry: bool = False) -> Standing:
        """The consent that applies to the identity (``unknown`` when nothing does).

        ``entry``: the registry entry's view instead (its own records count even when they
        apply to no scanned identity, e.g. a consent without issuer before any scan): what
        ``current_status`` reports, never what the gate decides on."""
        withdrawn = any(i == issuer or not i or scope == SCOPE_ALL for i, scope in self.withdrawals.get(patient_id, ()))
        recs = self.records.get(patient_id, [])
        target = self._target_of(patient_id, recs)
        latest = None
        for rec in recs:  # sorted by (effective, id): the last that applies decides
            if self._applies(rec, issuer, target, entry):
                latest = rec
        if withdrawn:
            return Standing("withdrawn", latest.effective if latest else None, True, latest.id if latest else None)
        if latest is None:
            return Standing("unknown", None, False, None)
        return Standing(latest.status, latest.effective, False, latest.id)

    def applying_records(self, patient_id: str, issuer: str) -> list[sql.Record]:
        """The records that apply to the identity, oldest first (for ``consent show``)."""
        recs = self.records.get(patient_id, [])
        target = self._target_of(patient_id, recs)
        return sorted((r for r in recs if self._applies(r, issuer, target)), key=lambda r: r.id)

    def unresolved(self) -> dict[str, int]:
        """Registry entries (Patient ID + issuer as recorded) whose current record is not a
        restriction and reaches no scanned identity, by kind (``ambiguous``, ``issuer-mismatch``:
        the index holds the ID under other issuers only, ``no-match-yet``), for coverage. An entry
        stops counting once every identity the index holds for its ID has a record of its own."""
        out: dict[str, int] = defaultdict(int)
        for pid, recs in self.records.items():
            latest: dict[str, sql.Record] = {}
            for rec in recs:
                latest[rec.issuer] = rec
            held = self.index.get(pid, set())
            settled = bool(held) and all(self.standing(pid, i).record_id is not None for i in held)
            for issuer, rec in latest.items():
                if rec.status in RESTRICTIONS or settled:
                    continue
                res = self.resolve(pid, issuer, rec.status, rec.scope)
                if res.unresolved:
                    kind = "ambiguous" if res.outcome == "ambiguous" else "issuer-mismatch" if res.elsewhere \
                        else "no-match-yet"
                    out[kind] += 1
        return dict(sorted(out.items()))
