"""What a run would release now: the selection (eligibility, recorded by the scan), the consent
gate, and the duplicate rule (one file per SOP Instance UID, the first indexed), decided once,
here, for ``run``, ``run --dry-run`` and ``audit`` alike: their ``would_release`` cannot differ.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..consent import registry as consent
from ..consent.gate import Gate
from ..home.config import Config
from ..ledger import Ledger
from ..ledger import batches as sql


@dataclass
class ReleasePlan:
    """The gate's decision over every eligible study, and the instances a run would release:
    those not yet released of each releasable study (``todo``, in the run's order)."""

    gate: Gate
    releasable: set[str] = field(default_factory=set)
    todo: list[tuple[str, list[sql.PendingInstance]]] = field(default_factory=list)

    @property
    def would_release(self) -> dict[str, int]:
        """Studies, instances and source bytes the run would de-identify and package."""
        return {"studies": len(self.todo), "instances": sum(len(p) for _, p in self.todo),
                "bytes": sum(i.size for _, p in self.todo for i in p)}

    def decision_of(self, study_uid: str) -> str | None:
        """``releasable``, the gate's waiting reason (the first blocked identity of the study),
        or None for a study with no eligible instance."""
        parts = [s for s in self.gate.studies if s.study_uid == study_uid]
        if not parts:
            return None
        blocked = [s.decision for s in parts if s.decision != "releasable"]
        return blocked[0] if blocked else "releasable"


def plan_release(ledger: Ledger, config: Config, today: dt.date) -> ReleasePlan:
    """Decide, from the index as it is now, what a run would release today."""
    gate = consent.gate(ledger, config.consent, today)
    plan = ReleasePlan(gate, {s.study_uid for s in gate.releasable})
    for study in sorted(plan.releasable):
        pending = sql.pending_instances(ledger, study)
        if pending:
            plan.todo.append((study, pending))
    return plan
