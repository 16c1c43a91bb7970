"""Release: de-identify the releasable studies and package them into signed, encrypted batches.

For each study the consent gate lets through, the instances not yet released are de-identified
(in worker processes, the plan compiled once per process), streamed into a batch (tar, zstd,
age, minisign) in HOME/outbox, and recorded in the ledger. A batch row is written in state
``packaging`` before its file and becomes ``packaged`` in the same transaction that records its
instances, after re-checking consent: a crash between the two, or a withdrawal meanwhile, leaves
nothing half-done that could be sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..batch.names import batch_path, signature_path
from ..batch.tarzst import FileMember, Member
from ..batch.write import BatchInfo, PatientConsent, remove_stale_temps, write_batch
from ..consent import registry as consent
from ..crypto.age import parse_recipients
from ..deid.pseudonym import Pseudonymizer, PseudonymKeys, patient_key
from ..deid.tables import PS315_EDITION
from ..errors import DicomError, GatewayError
from ..home.config import Config
from ..home.faults import checkpoint
from ..home.logfile import file_only, safe_traceback, where
from ..home.workers import WorkerPool
from ..keys.files import load_pseudonym_secret, load_signing_key
from ..ledger import Ledger, held
from ..ledger import batches as sql
from . import duplicates
from .bulkhead import StudyFailure, study_failure
from .plan import plan_release

if TYPE_CHECKING:
    from ..deid.files import PixelRef
    from ..deid.folder import RunSpec

# The de-identification engine (pydicom, numpy) is imported only when there is something to
# release: a cron run that finds nothing new stays light. ``run_spec`` imports it in this
# process before the workers are forked, so they inherit it.

log = logging.getLogger(__name__)


@dataclass
class ReleaseReport:
    """What a release pass did (counts, pseudonyms and batch IDs only)."""

    studies: int = 0
    batches: list[str] = field(default_factory=list)
    instances: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    plaintext_bytes: int = 0
    batch_bytes: int = 0
    skipped_withdrawn: int = 0
    would_release: dict[str, Any] = field(default_factory=dict)
    held_back: list[dict[str, Any]] = field(default_factory=list)  # studies: pseudonym, example path, reason
    duplicates: dict[str, int] = field(default_factory=dict)
    held_files: list[dict[str, str]] = field(default_factory=list)  # newly held back: path, other path

    def as_dict(self) -> dict[str, Any]:
        return {
            "studies": self.studies, "batches": len(self.batches), "batch_ids": self.batches,
            "instances": self.instances, "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "plaintext_bytes": self.plaintext_bytes, "batch_bytes": self.batch_bytes,
            "held_back": {"studies": len(self.held_back), "list": self.held_back,
                          "files": len(self.held_files), "file_list": self.held_files},
            "duplicates": self.duplicates,
            **({"would_release": self.would_release} if self.would_release else {}),
        }


def run_spec(config: Config) -> RunSpec:
    """The de-identification settings of this site (profile, options, overrides, secret)."""
    from ..deid.folder import RunSpec

    overrides = config.overrides
    return RunSpec(
        profile=config.profile, options=tuple(config.options),
        site_overrides=tuple(overrides.get("attribute", [])), site_private_keep=tuple(overrides.get("private", [])),
        output=config.home.outbox, quarantine=config.home.quarantine, keep_copies=config.quarantine_copies,
        secret=load_pseudonym_secret(config.home), site_id=config.site_id,
        image_compression=config.image_compression,
    )


def _release_one(path: bytes) -> tuple[str, Any]:
    """Worker: de-identify one source file (nothing written). Returns the output's bytes, or its
    de-identified header and a reference to the pixel bytes left in the source (the packaging
    process reads them straight into the batch: they never cross between processes), and its
    manifest entry's keys (transfer syntax; the pixel digest of re-encoded images)."""
    from ..deid.folder import worker_deidentify, worker_spec  # loaded in the parent before the fork
    from ..deid.recode import reencode

    codec = worker_spec().image_compression
    try:
        result = worker_deidentify(Path(os.fsdecode(path)), record=False, pixels_in_place=True)
        recoded = reencode(result, codec) if codec != "none" else None  # [batch] image_compression
    except DicomError as exc:
        return "refused", (exc.reason, exc.detail)
    except RecursionError:
        return "refused", ("unparsable", "nesting too deep")
    except OSError as exc:
        return "refused", ("unreadable", f"{type(exc).__name__} errno {exc.errno}")
    except Exception as exc:  # noqa: BLE001 - a bug in the engine: this study is held back, the run goes on
        return "failed", (f"{type(exc).__name__} at {where(exc)}", safe_traceback(exc))
    checkpoint("mid-deidentify")
    if recoded is not None:  # the whole file, its pixels re-encoded: nothing left in the source
        return "ok", (result.relpath().as_posix(), recoded.data, None, recoded.manifest_entry())
    data = result.head if result.pixels is not None else result.data
    if data is None:  # write=True always serialises: a bug, not a file to quarantine
        return "failed", ("deidentify_file returned no bytes", "")
    return "ok", (result.relpath().as_posix(), data, result.pixels, {"transfer_syntax": result.transfer_syntax})


def _member(data: bytes, pixels: PixelRef | None) -> bytes | FileMember:
    """What ``write_batch`` gets for one released file (DicomError if its source changed meanwhile)."""
    if pixels is None:
        return data
    return FileMember(data, pixels.open_checked(), pixels.offset, pixels.length)


LOOKAHEAD_FILES = 512  # per worker
LOOKAHEAD_BYTES = 64 * 1024 * 1024  # of finished results waiting for the packaging


@dataclass(frozen=True)
class Packing:
    """What every batch of one release pass shares."""

    ledger: Ledger
    config: Config
    spec: RunSpec
    recipients: Any
    signing: Any
    today: dt.date
    report: ReleaseReport


@dataclass(frozen=True)
class StudyPart:
    """One batch to write: a part of one study's pending instances, all of one patient."""

    study: str
    patient_id: str
    issuer: str
    pseudonym: str
    new_study: str
    instances: list[sql.PendingInstance]


WORKER_DIED = ("a de-identification worker process died (out of memory?): "
               "nothing of the interrupted batch was sent; the next run redoes it")


def _result_size(result: tuple[str, Any]) -> int:
    """Bytes a finished worker result holds in this process (a header, or a whole file)."""
    status, payload = result
    return len(payload[1]) if status == "ok" else 0


def _deidentify_all(spec: RunSpec, workers: int, paths: list[bytes]) -> tuple[Iterator[tuple[str, Any]], Any]:
    """Worker results for ``paths`` in order, and the pool to terminate (None when inline).

    One lazy stream for the whole run, computed ahead: workers de-identify the next batch's
    files while this process compresses, encrypts and hashes the current one, so even
    ``--workers 1`` keeps two cores busy. A result is usually a header of a few KB and a
    reference to the pixel bytes, so workers run far ahead (through a batch's encryption, fsync
    and signature); the bytes bound is for files carried whole. The workers die with the run (a
    SIGKILLed run must not leave workers behind that hold the HOME lock they inherited)."""
    from ..deid.folder import init_worker

    if workers < 1:
        init_worker(spec, quiet=True)
        return (_release_one(p) for p in paths), None
    pool = WorkerPool(workers, init_worker, (spec,), died=WORKER_DIED, die_with_parent=True)
    return pool.lookahead(_release_one, paths, per_worker=LOOKAHEAD_FILES, max_bytes=LOOKAHEAD_BYTES,
                          size=_result_size), pool


def batch_id_for(site_id: str, new_study_uid: str, part: int) -> str:
    """Deterministic: a re-packaged batch (after a crash) gets the same ID. No PHI: derived
    from the keyed study UID."""
    return f"{site_id}-{hashlib.sha256(new_study_uid.encode()).hexdigest()[:20]}-{part:03d}"


def _parts(pending: list[sql.PendingInstance], cap: int) -> list[list[sql.PendingInstance]]:
    """Batches of at most ``cap`` bytes, each holding one identity's instances (a study naming
    two patients makes two batches: each manifest, pseudonym and ledger row is one patient's)."""
    parts: list[list[sql.PendingInstance]] = [[]]
    size = 0
    for inst in sorted(pending, key=lambda i: (i.patient_id, i.issuer)):  # stable: the series order stays
        if parts[-1] and (size + inst.size > cap or (inst.patient_id, inst.issuer) !=
                          (parts[-1][0].patient_id, parts[-1][0].issuer)):
            parts.append([])
            size = 0
        parts[-1].append(inst)
        size += inst.size
    return [p for p in parts if p]


def recover(ledger: Ledger, outbox: Path) -> int:
    """Undo batches left in 'packaging' by a crash: their files (if any) were never sent."""
    undone = 0
    for b in sql.batches(ledger, ["packaging"]):
        _forget_batch(ledger, outbox, b.batch_id)
        undone += 1
    if undone:
        log.warning("undid %d batch(es) interrupted while packaging", undone)
    stale = remove_stale_temps(outbox)  # hidden ciphertext temps of a write_batch killed midway
    if stale:
        log.warning("removed %d temp file(s) of an interrupted batch write", stale)
    return undone


def release(
    ledger: Ledger,
    config: Config,
    *,
    today: dt.date,
    workers: int = 1,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ReleaseReport:
    """De-identify and package every releasable study's unreleased instances (``progress(done)``
    counts instances; ``on_total(instances)`` is called once they are known)."""
    report = ReleaseReport()
    outbox = config.home.outbox
    if not dry_run:
        recover(ledger, outbox)
    planned = plan_release(ledger, config, today)  # the same plan `run --dry-run` and `audit` report
    if not dry_run:
        _settle_duplicates(ledger, config, planned.releasable, report)
    todo = planned.todo
    if dry_run:
        report.would_release = {**planned.would_release, "list": _would_list(config, todo)}
        report.studies, report.instances = report.would_release["studies"], report.would_release["instances"]
        return report
    if not todo:
        held.keep_only(ledger, ())
        return report
    recipients = parse_recipients(config.central_recipients)
    signing = load_signing_key(config.home)
    spec = run_spec(config)
    plan = spec.plan()
    pz = Pseudonymizer.for_plan(PseudonymKeys(spec.secret, config.site_id), plan)
    parts = [(study, part) for study, pending in todo for part in _parts(pending, config.batch_max_bytes)]
    if on_total:
        on_total(sum(len(part) for _, part in parts))
    files = {study: len(pending) for study, pending in todo}
    results, pool = _deidentify_all(spec, workers, [i.path for _, part in parts for i in part])
    packing = Packing(ledger, config, spec, recipients, signing, today, report)
    done = 0
    withdrawn: set[str] = set()
    failed: set[str] = set()
    checkpoint("after-gate")
    try:
        for study, part in parts:
            mine = itertools.islice(results, len(part))
            if study not in withdrawn and study not in failed:
                patient_id, issuer = part[0].patient_id, part[0].issuer
                pseudonym = pz.patient(patient_key(patient_id, issuer, study))  # as the engine derives it
                new_study = pz.uid(study)
                counted = report.plaintext_bytes, report.quarantined.copy()
                try:
                    written = _package_part(packing, StudyPart(study, patient_id, issuer, pseudonym, new_study, part),
                                            mine)
                except Exception as exc:  # the bulkhead: this study only, unless the site itself failed
                    failure = study_failure(exc)
                    if failure is None:
                        raise
                    failed.add(study)
                    report.plaintext_bytes, report.quarantined = counted  # nothing of it was recorded
                    _undo_study(ledger, outbox, study)  # nothing of its failed batch stays recorded or in sight
                    _hold(ledger, study, pseudonym, part[0].path, files[study], failure, report)
                else:
                    if written is None:
                        withdrawn.add(study)  # consent changed under us: nothing more of this study
            for _ in mine:
                pass  # de-identified ahead but not packaged (withdrawn, held back): dropped, nothing written
            done += len(part)
            if progress:
                progress(done)
        report.studies = len({study for study, _ in parts})
    finally:
        if pool is not None:
            pool.terminate()
    held.keep_only(ledger, failed)
    ledger.record_event("run", "release", "partial" if failed else "ok",
                        {k: v for k, v in report.as_dict().items() if k != "held_back"}
                        | {"held_back": len(failed)})
    return report


def _settle_duplicates(ledger: Ledger, config: Config, studies: set[str], report: ReleaseReport) -> None:
    """Files sharing a SOP Instance UID: copies are released once, conflicts held back (recorded
    in HOME/quarantine as refused files are) before anything of ``studies`` is packaged."""
    dupes = duplicates.settle(ledger, studies)
    report.duplicates = dupes.as_dict()
    report.held_files = [{"path": d.path.decode("utf-8", "backslashreplace"),
                          "other_path": d.other_path.decode("utf-8", "backslashreplace")} for d in dupes.new_conflicts]
    if dupes.new_conflicts:
        duplicates.quarantine_records(config.home.quarantine, config.profile, dupes.new_conflicts,
                                      config.quarantine_copies)


def _undo_study(ledger: Ledger, outbox: Path, study: str) -> None:
    """Forget the study's batches still 'packaging' and remove their files (never sent)."""
    for b in sql.batches(ledger, ["packaging"]):
        if b.study_uid == study:
            _forget_batch(ledger, outbox, b.batch_id)


def _forget_batch(ledger: Ledger, outbox: Path, batch_id: str) -> None:
    """Remove a batch that never left (its file and signature, if written) and its ledger row."""
    path = batch_path(outbox, batch_id)
    for p in (signature_path(path), path):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    with ledger.transaction() as conn:
        sql.drop_batch(conn, batch_id)


def _would_list(config: Config, todo: list[tuple[str, list[sql.PendingInstance]]]) -> list[dict[str, Any]]:
    """Which studies a dry run would release: the patient's pseudonym (as the release derives
    it; None without the secret), the folder holding the study's files, series, instances, bytes."""
    import os

    try:
        pz: Pseudonymizer | None = Pseudonymizer.for_plan(PseudonymKeys(load_pseudonym_secret(config.home),
                                                                        config.site_id))
    except GatewayError:
        pz = None
    out = []
    for study, pending in todo:
        patients = sorted({(i.patient_id, i.issuer) for i in pending})
        paths = [bytes(i.path).decode("utf-8", "backslashreplace") for i in pending]
        out.append({
            "pseudonyms": [pz.patient(patient_key(pid, issuer, study)) for pid, issuer in patients] if pz else None,
            "folder": os.path.commonpath([os.path.dirname(p) for p in paths]),
            "series": len({i.series_uid for i in pending}), "instances": len(pending),
            "bytes": sum(i.size for i in pending)})
    return sorted(out, key=lambda st: st["folder"])


def _hold(ledger: Ledger, study: str, pseudonym: str, example: bytes, files: int, failure: StudyFailure,
          report: ReleaseReport) -> None:
    """Record a study held back (its batch already undone) and log why, traceback in the file only."""
    shown = example.decode("utf-8", "backslashreplace")
    with ledger.transaction() as conn:
        held.hold_study(conn, study_uid=study, pseudonym=pseudonym, example=example, files=files,
                        reason=failure.reason, detail=failure.detail)
    report.held_back.append({"pseudonym": pseudonym, "example": shown, "files": files,
                             "reason": failure.reason, "detail": failure.detail})
    file_only.error("held back the study of %s (%d files, e.g. %s): %s: %s\n%s", pseudonym, files, shown,
                    failure.reason, failure.detail, failure.trace or "(no traceback)")


def _package_part(packing: Packing, batch: StudyPart, part_results: Iterator[tuple[str, Any]]) -> str | None:
    """Write one batch for ``batch`` from the workers' ``part_results``; return its ID, '' if
    every file was refused, None if the patient is no longer releasable."""
    from ..deid.folder import quarantine

    ledger, config, spec, today, report = packing.ledger, packing.config, packing.spec, packing.today, packing.report
    study, patient_id, issuer, part = batch.study, batch.patient_id, batch.issuer, batch.instances
    pseudonym, new_study = batch.pseudonym, batch.new_study
    with ledger.transaction() as conn:  # every identity of the study, as the gate decided it
        basis = consent.study_release_basis(conn, study, patient_id, issuer, config.consent, today)
        if basis is None:
            report.skipped_withdrawn += 1
            return None
        number = sql.next_part(ledger, study)
        batch_id = batch_id_for(config.site_id, new_study, number)
        sql.begin_batch(conn, batch_id=batch_id, study_uid=study, patient_id=patient_id, issuer=issuer,
                        pseudonym=pseudonym, new_study_uid=new_study, part=number,
                        consent_status=basis.status, consent_date=basis.effective)
    checkpoint("after-begin-batch")
    released: list[str] = []
    refused: list[tuple[str, str]] = []
    results = zip(part, part_results, strict=True)

    def members() -> Iterator[Member]:
        for inst, (status, payload) in results:
            if status == "failed":
                raise StudyFailure("engine-error", payload[0], payload[1])
            if status == "ok":
                name, data, pixels, entry = payload
                try:
                    member = _member(data, pixels)
                except DicomError as exc:
                    status, payload = "refused", (exc.reason, exc.detail)
                else:
                    released.append(inst.sop_instance_uid)
                    report.plaintext_bytes += len(data) + (pixels.length if pixels else 0)
                    yield name, member, entry
                    if len(released) == 2:
                        checkpoint("mid-package")
                    continue
            reason, detail = payload  # refused by the worker, or its source changed since
            if reason == "changed-while-read" or not os.path.exists(inst.path):
                # not what the scan saw (vanished, being rewritten): the whole study waits for
                # the next run's scan, rather than a refusal recorded for good and a study sent short
                raise StudyFailure("source-changed", f"{os.fsdecode(inst.path)}: {reason} ({detail})")
            refused.append((inst.sop_instance_uid, reason))
            report.quarantined[reason] += 1
            quarantine(spec, Path(os.fsdecode(inst.path)), reason, detail)

    stream = members()
    first = next(stream, None)
    if first is None:  # every file refused: no batch
        with ledger.transaction() as conn:
            sql.drop_batch(conn, batch_id)
            sql.record_quarantined(conn, study, refused)
        return ""

    def all_members() -> Iterator[Member]:
        yield first
        yield from stream

    info = BatchInfo(
        site=config.site_id, batch_id=batch_id, profile=config.profile, options=tuple(config.options),
        ps315_edition=PS315_EDITION,
        patients=(PatientConsent(pseudonym, basis.status),),
        extra={"consent_mode": basis.mode, "study": new_study, "part": number},
    )
    z = config.zstd
    result = write_batch(config.home.outbox, info, all_members(), packing.recipients, packing.signing, zstd_level=z.level,
                         zstd_threads=z.threads, zstd_min_match=z.min_match, zstd_hash_log=z.hash_log,
                         expected_files=len(part))
    checkpoint("after-batch-written")
    with ledger.transaction() as conn:
        state = sql.state_in(conn, batch_id)
        still = consent.study_release_basis(conn, study, patient_id, issuer, config.consent, today)
        if state != "packaging" or still is None:
            cancelled = True
        else:
            cancelled = False
            sql.finish_batch(conn, batch_id, file_name=result.path.name, sha256=result.sha256, size=result.size,
                             files=result.files, plaintext_bytes=result.plaintext_bytes, released=released,
                             study_uid=study, quarantined=refused)
    if cancelled:  # withdrawn while we packaged: the batch must never leave
        for p in (result.signature_path, result.path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        report.skipped_withdrawn += 1
        return None
    report.batches.append(batch_id)
    report.instances += len(released)
    report.batch_bytes += result.size
    return batch_id
