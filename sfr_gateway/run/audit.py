"""The audit as ``run`` would release (``sfr-gateway audit`` without ``--all``): the same scan,
selection, consent gate and duplicate rule, then the engine's dry run on exactly the files the
run would de-identify.

The run's own functions decide, never a copy of its rules: the sources are scanned
(``scan.walk.scan``, which applies ``scan.eligibility``) into an in-memory copy of the ledger
(the HOME is left as it was), ``run.plan.plan_release`` applies the consent gate and the
one-file-per-UID rule, and each file the plan holds goes through the engine as in the plain
audit. Every other file under the sources is reported with why a run would not release it:
unreadable, excluded by the selection, waiting on consent, released before, refused before,
a copy of another file or conflicting with it (``run.duplicates.compare``). ``would_release``
is the plan's number of instances: ``run --dry-run`` reports the same plan.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sfr_gateway.audit import finish_report, make_sink, report_meta
from sfr_gateway.audit.collect import NO_PATIENT_ID_FLAG, AuditSettings, InstanceAudit, iter_audits_of
from sfr_gateway.audit.summary import Summary
from sfr_gateway.consent.registry import WAITING_REASONS
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys, patient_key
from sfr_gateway.ledger import batches, held, instances
from sfr_gateway.ledger.db import scratch_copy
from sfr_gateway.run.duplicates import CONFLICT, compare
from sfr_gateway.run.plan import plan_release
from sfr_gateway.scan.eligibility import EXCLUSION_REASONS
from sfr_gateway.scan.header import UNREADABLE_REASONS
from sfr_gateway.scan.walk import scan

STAGES = {
    "unreadable": "the scan cannot read the file",
    "selection": "the selection excludes it (not an eligible chest-CT image)",
    "consent": "the consent gate holds its study",
    "released-before": "already released by an earlier run",
    "refused-before": "refused by the engine in an earlier run (`quarantine list`)",
    "duplicate": "another file has its SOP Instance UID (released once: the first indexed)",
}


def _text(raw: bytes) -> str:
    return os.fsdecode(raw)


def _not_released(row: Any, stage: str, reason: str, detail: str, pz: Pseudonymizer) -> InstanceAudit:
    """A file the run would not release, under the keyed identifiers its instance would get."""
    audit = InstanceAudit(file=_text(row.path), status="not-released",
                          why={"stage": stage, "reason": reason, "detail": detail})
    if row.study_uid:
        audit.patient = pz.patient(patient_key(row.patient_id or "", row.issuer or "", row.study_uid))
        audit.study = pz.uid(row.study_uid)
        audit.series = pz.uid(row.series_uid) if row.series_uid else ""
        audit.instance = pz.uid(row.sop_instance_uid) if row.sop_instance_uid else ""
        audit.sop_class = row.sop_class_uid or ""
        audit.modality = (row.modality or "")[:16]
        audit.series_number = "" if row.series_number is None else str(row.series_number)
        if not (row.patient_id or "").strip():
            audit.flags.append(NO_PATIENT_ID_FLAG)  # counted in the totals as the plain audit counts it
    return audit


def _verdicts(ledger: Any, plan: Any, rows: list[Any], pz: Pseudonymizer) -> Iterator[InstanceAudit]:
    """Why a run would not release each of ``rows`` (files outside the plan), as the run decides."""

    releases = batches.release_rows(ledger)
    owners = {g[0].sop_instance_uid: g[0].path for g in held.shared_eligible(ledger)}
    for row in rows:
        if row.state == "unreadable":
            yield _not_released(row, "unreadable", row.reason or "", UNREADABLE_REASONS.get(row.reason or "", ""), pz)
            continue
        if not row.eligible:
            reason = row.exclusion or ""
            yield _not_released(row, "selection", reason, EXCLUSION_REASONS.get(reason, ""), pz)
            continue
        decision = plan.decision_of(row.study_uid)
        if decision != "releasable":
            yield _not_released(row, "consent", decision or "", WAITING_REASONS.get(decision or "", ""), pz)
            continue
        done = releases.get(row.sop_instance_uid)
        if done is not None and done[0] == "packaged":
            yield _not_released(row, "released-before", "released", f"already released in batch {done[1]}", pz)
            continue
        if done is not None:
            yield _not_released(row, "refused-before", done[2] or "quarantined",
                                "refused by the engine in an earlier run: `sfr-gateway quarantine list`", pz)
            continue
        owner = owners.get(row.sop_instance_uid)
        if owner is not None and owner != row.path:
            same, why = compare(owner, row.path)
            if same:
                yield _not_released(row, "duplicate", "identical-copy",
                                    f"{why} as {_text(owner)}: released once, as that file", pz)
            else:
                yield _not_released(row, "duplicate", CONFLICT,
                                    f"its SOP Instance UID is also that of {_text(owner)}, with other content "
                                    f"({why}): that file is the one released; this one is held back", pz)
            continue
        yield _not_released(row, "other", "not-pending", "not offered by the index (moved or changed meanwhile?)", pz)


def audit_as_run(config: Any, sources: Iterable[Path], plan: Plan, keys: PseudonymKeys, fh: BinaryIO,
                 fmt: str = "json", *, settings: AuditSettings | None = None, workers: int = 1,
                 progress: Callable[[int, int], None] | None = None, color: bool = False,
                 today: dt.date | None = None) -> Summary:
    """Audit what ``run`` would release from ``sources`` now (and why every other file would not
    be); write the ``fmt`` report to ``fh``; return the totals. The HOME is not written."""

    settings = settings or AuditSettings()
    today = today or dt.date.today()
    with scratch_copy(config.home.state_db) as ledger:
        scanned = scan(ledger, list(sources), config.selection)
        release = plan_release(ledger, config, today)
        roots = [os.fsencode(os.path.abspath(os.fsencode(s))) for s in sources]
        rows = instances.files_under(ledger, roots)
        todo = [i.path for _, pending in release.todo for i in pending]
        in_plan = set(todo)
        sink = make_sink(fmt, fh, color=color)
        if not sink.wants_series_thumbnails:
            settings = AuditSettings(reveal=settings.reveal, thumbnails=False, thumb_size=settings.thumb_size)
        would = release.would_release
        meta = report_meta(plan, keys, settings) | {
            "selection": "as run: selection, consent gate and duplicate rule of this HOME",
            "would_release": would["instances"], "would_release_studies": would["studies"],
            "scan": scanned.as_dict()["this_scan"],
        }
        summary = Summary()
        sink.start(meta)
        for audit in iter_audits_of([Path(_text(p)) for p in todo], plan, keys, settings, workers=workers,
                                    progress=progress):
            summary.add(audit)
            sink.add(audit)
        pz = Pseudonymizer(keys, offset_range=plan.offset_range)
        for audit in _verdicts(ledger, release, [r for r in rows if r.path not in in_plan], pz):
            summary.add(audit)
            sink.add(audit)
    summary.would_release = would["instances"]
    finish_report(sink, summary, settings)
    return summary
