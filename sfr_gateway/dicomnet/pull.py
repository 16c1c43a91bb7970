"""``pull``: fetch from the PACS only what may leave (GDPR data minimisation).

1. The consent registry names the releasable patients (``consent.releasable_identities``: the
   gate's identity rule; a consent without an issuer is asked under the issuer it resolves to).
2. One study-level C-FIND per patient (Patient ID, the collection's date window); answers of
   another patient or issuer are dropped.
3. One series-level C-FIND per study; the selection rules keep the eligible series (a PACS that
   answers no series query gets whole studies judged on their description).
4. Series already in the index, and studies already retrieved (``pull_studies`` 'complete'), are
   skipped; at most ``[pacs] max_studies`` studies are retrieved, the rest wait for the next pull.
5. Each study is retrieved series by series (C-MOVE to our listener, or C-GET into the incoming
   folder), recorded 'pending' before and with the PACS's sub-operation counts after.

A pull that fails (PACS unreachable, too slow, dropped association, move destination refused)
records what it did, and the next pull resumes: a study not 'complete' is asked again, up to
``MAX_ATTEMPTS`` times. ``run`` then scans the incoming folder and releases what consent allows.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from ..consent import registry as consent
from ..errors import ConfigError, DicomNetError, DicomRefusedError
from ..home.config import Config
from ..home.lock import exclusive
from ..ledger import Ledger, open_ledger
from ..ledger import dicomnet as sql
from . import query, statuses
from .store import Incoming, valid_uid

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a study still partial after this many retrievals is left to a human


@dataclass
class PullReport:
    """What one pull did: counts only (no patient values, no UIDs)."""

    pacs: str
    method: str
    dry_run: bool = False
    patients: int = 0
    studies_found: int = 0
    to_retrieve: int = 0
    left_for_next: int = 0
    instances_expected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    studies: Counter[str] = field(default_factory=Counter)  # complete / partial / failed
    suboperations: Counter[str] = field(default_factory=Counter)  # completed / failed / warning
    error: str | None = None
    refused: bool = False
    listener: str = ""
    first_event: int = 0  # the ledger's last event before this pull (to find our listener's rejections)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pacs": self.pacs, "method": self.method, "dry_run": self.dry_run, "patients": self.patients,
            "studies_found": self.studies_found, "to_retrieve": self.to_retrieve, "left_for_next": self.left_for_next,
            "instances_expected": self.instances_expected, "skipped": dict(sorted(self.skipped.items())),
            "studies": {k: self.studies.get(k, 0) for k in ("complete", "partial", "failed")},
            "suboperations": {k: self.suboperations.get(k, 0) for k in ("completed", "failed", "warning")},
            "error": self.error, "listener": self.listener,
        }

    def summary_line(self) -> str:
        if self.dry_run:
            return (f"dry run: {self.patients} releasable patients; {self.studies_found} eligible studies on "
                    f"{self.pacs}; would retrieve {self.to_retrieve} ({self.instances_expected} instances), "
                    f"{self.left_for_next} left for a later pull")
        subs = self.suboperations
        return (f"pull from {self.pacs} ({self.method}): {self.patients} releasable patients, {self.studies_found} eligible "
                f"studies; retrieved {self.studies.get('complete', 0)} complete, {self.studies.get('partial', 0)} partial, "
                f"{self.studies.get('failed', 0)} failed ({subs.get('completed', 0)} instances, {subs.get('failed', 0)} "
                f"failed, {subs.get('warning', 0)} warnings); {self.left_for_next} left for the next pull")

    def raise_for_outcome(self) -> None:
        """After the report is shown: refused → 18, any other failure or partial retrieval → 17."""
        if self.refused:
            raise DicomRefusedError(self.error or "refused by the PACS")
        if self.error:
            raise DicomNetError(self.error)
        if self.studies.get("partial") or self.studies.get("failed"):
            raise DicomNetError(f"{self.studies.get('partial', 0) + self.studies.get('failed', 0)} study retrieval(s) "
                                "incomplete (see the counts); the next pull asks for them again")


def releasable_patients(ledger: Ledger, config: Config, today: dt.date) -> list[tuple[str, str]]:
    """(Patient ID, issuer) of every patient the consent policy lets through today."""
    return consent.releasable_identities(ledger, config.consent, today)


def pull(config: Config, *, today: dt.date | None = None, dry_run: bool = False) -> PullReport:
    """One pull under ``HOME/pull.lock`` (LockHeldError if another pull runs)."""
    from .pacs import Pacs

    p = config.pacs
    if not p.host or not p.called_ae:
        raise ConfigError("no PACS configured: set [pacs] host, port and called_ae in config.toml")
    calling = p.calling_ae or config.dicom.ae_title
    destination = p.move_destination or config.dicom.ae_title
    report = PullReport(pacs=f"{p.called_ae}@{p.host}:{p.port}", method=p.retrieve, dry_run=dry_run)
    today = today or dt.date.today()
    with exclusive(config.home.root / "pull.lock"), open_ledger(config.home.state_db) as ledger:
        patients = releasable_patients(ledger, config, today)
        report.patients = len(patients)
        if not patients:
            if not dry_run:
                ledger.record_event("pull", "pull", "complete", report.as_dict())
            return report
        run_id = 0 if dry_run else sql.start_pull(ledger, report.pacs, p.retrieve)
        report.first_event = sql.last_event_id(ledger)
        listener = None
        try:
            store = None
            if not dry_run and p.retrieve == "move":
                listener = _ensure_listener(config, report)
            elif not dry_run:
                store = _get_store(config)
            with Pacs(p, calling, method=p.retrieve, storage_classes=store[1] if store else frozenset(),
                      on_store=store[0] if store else None) as pacs:
                todo = _select(pacs, ledger, config, patients, report)
                report.to_retrieve = min(len(todo), p.max_studies)
                report.left_for_next = len(todo) - report.to_retrieve
                report.instances_expected = sum(_expected(s) or 0 for s in todo[:p.max_studies])
                if not dry_run:
                    for study in todo[:p.max_studies]:
                        _retrieve(pacs, ledger, run_id, study, destination, report)
        except DicomNetError as exc:
            report.error = str(exc)
            report.refused = isinstance(exc, DicomRefusedError)
            if dry_run:
                raise
        except BaseException as exc:  # not the PACS's doing (configuration, disk...): recorded, then raised
            if not dry_run:
                sql.finish_pull(ledger, run_id, "failed", patients=report.patients, studies_found=report.studies_found,
                                studies_asked=sum(report.studies.values()), error=type(exc).__name__,
                                detail=report.as_dict())
            raise
        finally:
            if listener is not None:
                listener.stop()
        if not dry_run:
            state = "failed" if report.error else (
                "partial" if report.studies.get("partial") or report.studies.get("failed") else "complete")
            sql.finish_pull(ledger, run_id, state, patients=report.patients, studies_found=report.studies_found,
                            studies_asked=sum(report.studies.values()), error=report.error, detail=report.as_dict())
    return report


def _select(pacs: Any, ledger: Ledger, config: Config, patients: list[tuple[str, str]],
            report: PullReport) -> list[query.StudyAnswer]:
    """The studies to retrieve, oldest first, each with the series to ask for."""
    rules = config.selection
    found: dict[str, query.StudyAnswer] = {}
    for patient_id, issuer in patients:
        if not query.queryable(patient_id):
            report.skipped["unqueryable-patient-id"] += 1
            continue
        for ds in pacs.find(query.study_query(patient_id, rules), "a study query"):
            answer = query.study_answer(ds, patient_id, issuer, config.pacs.issuer)
            if isinstance(answer, str):
                report.skipped[answer] += 1
                continue
            excluded = query.study_exclusion(answer, rules)
            if excluded:
                report.skipped[f"study:{excluded}"] += 1
                continue
            found.setdefault(answer.study_uid, answer)
    before = sql.pulled_studies(ledger, found)
    todo = []
    for study in sorted(found.values(), key=lambda s: (s.study_date, s.study_uid)):
        done = before.get(study.study_uid)
        if done is not None and (done.state == "complete" or done.attempts >= MAX_ATTEMPTS):
            report.skipped["already-retrieved" if done.state == "complete" else "gave-up-after-attempts"] += 1
            continue
        query.judge_series(study, pacs.find(query.series_query(study.study_uid), "a series query"), rules)
        if study.series_answered:
            for s in study.series:
                if s.exclusion:
                    report.skipped[f"series:{s.exclusion}"] += 1
            if not study.eligible_series:
                continue
            have = sql.indexed_per_series(ledger, [s.series_uid for s in study.eligible_series])
            wanted = [s for s in study.eligible_series if s.instances is None or
                      max(have.get(s.series_uid, 0), _received(config, study.study_uid, s.series_uid)) < s.instances]
            report.skipped["series:already-here"] += len(study.eligible_series) - len(wanted)
            if not wanted:
                continue
            study.series = wanted
        else:
            excluded = query.whole_study_exclusion(study, rules)
            if excluded:
                report.skipped[f"study:{excluded}"] += 1
                continue
        report.studies_found += 1
        todo.append(study)
    return todo


def _received(config: Config, study_uid: str, series_uid: str) -> int:
    """Instances of a series already in the incoming folder (received, maybe not yet scanned)."""
    if not (valid_uid(study_uid) and valid_uid(series_uid)):  # never a path from an answer that is not a UID
        return 0
    try:
        return sum(1 for e in os.scandir(config.incoming / study_uid / series_uid) if e.name.endswith(".dcm"))
    except OSError:
        return 0


def _expected(study: query.StudyAnswer) -> int | None:
    if study.series_answered:
        counts = [s.instances for s in study.eligible_series]
        return None if None in counts else sum(c or 0 for c in counts)
    return study.instances


def _retrieve(pacs: Any, ledger: Ledger, run_id: int, study: query.StudyAnswer, destination: str,
              report: PullReport) -> None:
    """Retrieve one study (its eligible series, one request each) and record the outcome."""
    series = [s.series_uid for s in study.eligible_series] if study.series_answered else []
    sql.mark_asked(ledger, run_id, study.study_uid, study.patient_id, study.issuer, study.study_date, series,
                   _expected(study))
    totals: Counter[str] = Counter()
    errors: list[str] = []
    lost = False
    for uid in series or [""]:
        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES" if uid else "STUDY"
        ident.StudyInstanceUID = study.study_uid
        if uid:
            ident.SeriesInstanceUID = uid
        got = pacs.retrieve(ident, destination)
        totals.update({"completed": got.completed, "failed": got.failed, "warning": got.warning,
                       "remaining": got.remaining})
        if got.state != "complete":
            errors.append(got.error or f"{got.failed} sub-operation(s) failed")
        first = not report.suboperations["completed"] and not totals["completed"]
        refused = first and _refusal(got, destination, pacs.where, pacs.method,
                                     sql.listener_rejections_since(ledger, report.first_event))
        if refused:
            sql.mark_result(ledger, study.study_uid, "failed", totals["completed"], totals["failed"], totals["warning"],
                            totals["remaining"], errors[-1], attempt=False)
            report.studies["failed"] += 1
            raise DicomRefusedError(refused)
        if got.status is None:
            lost = True
            break
    state = "complete" if not errors else ("partial" if totals["completed"] else "failed")
    sql.mark_result(ledger, study.study_uid, state, totals["completed"], totals["failed"], totals["warning"],
                    totals["remaining"], "; ".join(errors) or None, attempt=bool(errors) and not lost)
    report.studies[state] += 1
    for key in ("completed", "failed", "warning"):
        report.suboperations[key] += totals[key]
    if lost:
        raise pacs.lost("a retrieval", got.started)


def _refusal(got: Any, destination: str, where: str, method: str, rejected: list[dict[str, Any]]) -> str | None:
    """The cause, when the first retrieval of a pull was refused before any sub-operation (a
    failure after others succeeded is the study's, not the set-up's): our listener rejected
    the PACS's association (its AE title or address not allowed), the move destination is unknown
    to the PACS (A801, or the Cxxx some PACS answer instead), or the PACS does not do C-GET."""
    if got.status is None or got.status in (statuses.SUCCESS, statuses.SUBOPS_WARNING) or got.completed or got.failed:
        return None
    if rejected:
        last = rejected[-1]
        who = f"calling AE {last['calling_ae']}" if last.get("calling_ae") else f"address {last.get('address')}"
        return (f"our listener rejected the PACS's association ({who}: {last.get('reason')}): add it to [dicom] "
                "allowed_aes (or allowed_hosts) and restart `listen`; the next pull resumes")
    if got.status == statuses.MOVE_DESTINATION_UNKNOWN:
        cause = f"the PACS {where} does not know the move destination {destination}"
    elif method == "move":
        cause = (f"the PACS {where} refused the retrieval before any sub-operation ({got.error}); the usual cause is "
                 f"a move destination it does not know: is {destination} registered there")
    else:
        return (f"the PACS {where} refused the C-GET before any sub-operation ({got.error}); does it support C-GET? "
                "(else set [pacs] retrieve = \"move\"); the next pull resumes")
    return (f"{cause} (AE title {destination}, this host's address, [dicom] port)? Register it in the PACS, or set "
            "[pacs] move_destination; the next pull resumes")


def _ensure_listener(config: Config, report: PullReport) -> Any:
    """C-MOVE needs our listener: use the running one (``listen``, its port taken), or start one
    in this process for the duration of the pull."""
    d = config.dicom
    probe = socket.socket(socket.AF_INET6 if ":" in d.bind else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((d.bind, d.port))
    except OSError:
        report.listener = f"running listener on port {d.port}"
        return None
    finally:
        probe.close()
    from .listen import Listener, ListenSettings

    allow = tuple(a for a in (config.pacs.called_ae,) if a)
    listener = Listener(config, ListenSettings.from_config(config, allow=allow))
    listener.start()
    report.listener = f"started for this pull on port {listener.address[1]}"
    return listener


def _get_store(config: Config) -> tuple[Any, frozenset[str]]:
    """C-GET: the instances come back on our association; they are stored as the listener does."""
    from .listen import admitted_classes, store_event

    incoming = Incoming(config.incoming, admitted_classes(config))
    incoming.prepare()

    def on_store(event: Any) -> Any:
        result = store_event(incoming, event)
        if not result.ok:
            log.warning("refused an instance retrieved by C-GET: %s (status 0x%04X)", result.reason, result.status)
        return result.status

    return on_store, incoming.admitted
