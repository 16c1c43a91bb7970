"""The dry run itself: each file goes through ``deidentify_file`` (the engine ``deidentify`` uses),
with ``write=False`` and every decision recorded, and becomes one :class:`InstanceAudit`.

Nothing is written, nothing leaves the machine: the engine works on an in-memory copy read
from the source, which is opened read-only. Values are masked (or revealed) here, in the
process that read them, so a worker never sends real values to its parent unless ``reveal``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfr_gateway.audit import risk
from sfr_gateway.audit.mask import Masker, canonical
from sfr_gateway.audit.risk import Flag
from sfr_gateway.audit.thumbs import thumbnail_of_dataset
from sfr_gateway.deid.engine import Change
from sfr_gateway.deid.files import DeidResult, deidentify_file
from sfr_gateway.deid.folder import iter_inputs
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys, patient_key
from sfr_gateway.deid.rules import DUPLICATE_RULE
from sfr_gateway.deid.sameness import compare_files
from sfr_gateway.errors import DicomError
from sfr_gateway.home.workers import WorkerPool

log = logging.getLogger(__name__)

#: A file without a Patient ID: no consent can match it (``[consent] without_patient_id``).
NO_PATIENT_ID_FLAG = Flag("no-patient-id", "PatientID",
                          "no Patient ID: no consent can match it; `run` holds it unless [consent] "
                          "without_patient_id = \"release\"")

#: Engine action words -> report action words (the engine says "uid" for a keyed UID).
ACTIONS = ("removed", "emptied", "dummy", "pseudonymised", "shifted", "cleaned", "kept", "added")
_ACTION_NAMES = {"uid": "pseudonymised"}


@dataclass(frozen=True)
class AttributeRecord:
    """What the engine does to one attribute of one instance, and which rule decided it."""

    path: str
    tag: str
    keyword: str
    vr: str
    private_creator: str | None
    action: str
    code: str
    rule: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (see docs/audit.md)."""
        return {"path": self.path, "tag": self.tag, "keyword": self.keyword, "vr": self.vr,
                "private_creator": self.private_creator, "action": self.action, "code": self.code,
                "rule": self.rule, "before": self.before, "after": self.after}


@dataclass
class InstanceAudit:
    """The audit of one source file: released (with its attribute records), quarantined by the
    engine, a duplicate released once, or (an audit as ``run``) not released, with ``why``."""

    file: str
    status: str
    patient: str = ""
    study: str = ""
    series: str = ""
    instance: str = ""
    sop_class: str = ""
    modality: str = ""
    series_number: str = ""
    instance_number: str = ""
    mask: str | None = None
    quarantine: dict[str, str] | None = None
    flags: list[Flag] = field(default_factory=list)
    attributes: list[AttributeRecord] = field(default_factory=list)
    thumbnail: bytes | None = field(default=None, repr=False)
    why: dict[str, str] | None = None  # not released by a run: stage, reason, detail

    def as_dict(self) -> dict[str, Any]:
        """JSON form (see docs/audit.md); the thumbnail is for the HTML report only."""
        return {
            "file": self.file, "status": self.status, "patient": self.patient, "study": self.study,
            "series": self.series, "instance": self.instance, "sop_class": self.sop_class,
            "modality": self.modality, "series_number": self.series_number,
            "instance_number": self.instance_number, "mask": self.mask, "quarantine": self.quarantine,
            "flags": [f.as_dict() for f in self.flags], "attributes": [a.as_dict() for a in self.attributes],
            **({"why": self.why} if self.why is not None else {}),
        }


@dataclass(frozen=True)
class AuditSettings:
    """How to audit: reveal real values or not, thumbnails or not (and their size)."""

    reveal: bool = False
    thumbnails: bool = True
    thumb_size: int = 128


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _text_of(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    value = value.value if hasattr(value, "value") else value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _records(changes: Iterable[Change], masker: Masker, plan: Plan) -> tuple[list[AttributeRecord], list[Flag]]:
    records: list[AttributeRecord] = []
    flags: list[Flag] = []
    creators: dict[tuple[int, str], list[str]] = {}
    for c in changes:
        action = _ACTION_NAMES.get(c.action, c.action)
        records.append(AttributeRecord(c.path, _tag_text(c.tag), c.keyword, c.vr, c.private_creator, action, c.code,
                                       c.rule, masker.value(c.before, c.vr), masker.value(c.after, c.vr)))
        is_creator = c.tag >> 16 & 1 and 0x10 <= c.tag & 0xFFFF <= 0xFF
        if action in ("kept", "cleaned") and c.after is not None and not is_creator:
            parts = canonical(c.after, c.vr)
            if isinstance(parts, list):
                flag = risk.free_text_flag(c.path, c.keyword, c.vr, parts)
                if flag:
                    flags.append(flag)
        if c.private_creator is not None and c.tag & 0xFFFF >= 0x1000:
            creators.setdefault((c.tag >> 16, c.private_creator), []).append(action)
    for (group, creator), actions in creators.items():
        if not risk.known_creator(creator, plan):
            counts = ", ".join(f"{actions.count(a)} {a}" for a in sorted(set(actions)))
            flags.append(Flag("unknown-private-creator", f"({group:04X},xx00)",
                              f"Private Creator {creator!r} not in PS3.15 E.3.10-1 nor TCIA KB: {counts}"))
    return records, flags


def _released(path: Path, result: DeidResult, masker: Masker, plan: Plan, settings: AuditSettings) -> InstanceAudit:
    ds = result.dataset
    records, flags = _records(result.changes, masker, plan)
    if result.mask:
        flags.append(Flag("burned-in-masked", "PixelData", f"mask layout {result.mask} applied"))
    image_type = _text_of(ds, "ImageType").split("\\")
    if "PixelData" in ds and "BurnedInAnnotation" not in ds and risk.needs_burned_in_check(image_type):
        flags.append(Flag("burned-in-unknown", "BurnedInAnnotation", "absent on a derived/secondary image"))
    if not risk.usual_sop_class(result.sop_class):
        flags.append(Flag("unusual-sop-class", "SOPClassUID", _sop_name(result.sop_class)))
    source_id = next((c.before for c in result.changes if c.tag == 0x00100020 and c.path == "PatientID"), None)
    if source_id is None or not str(source_id).strip():
        flags.append(NO_PATIENT_ID_FLAG)
    audit = InstanceAudit(
        file=os.fsdecode(path), status="released", patient=result.patient_pseudonym, study=result.study_uid,
        series=result.series_uid, instance=result.sop_uid, sop_class=result.sop_class,
        modality=_text_of(ds, "Modality"), series_number=_text_of(ds, "SeriesNumber"),
        instance_number=_text_of(ds, "InstanceNumber"), mask=result.mask, flags=flags, attributes=records,
    )
    if settings.thumbnails and any(risk.image_flag(f.kind) for f in flags):
        audit.thumbnail = thumbnail_of_dataset(ds, settings.thumb_size)
    return audit


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID_dictionary

    return f"{uid} ({UID_dictionary.get(uid, ('unknown SOP class',))[0]})"


def _quarantined(path: Path, reason: str, detail: str, pz: Pseudonymizer, settings: AuditSettings) -> InstanceAudit:
    """A refused file: grouped by the keyed UIDs its header would have got, if it has a header."""
    import pydicom

    audit = InstanceAudit(file=os.fsdecode(path), status="quarantined", quarantine={"reason": reason, "detail": detail})
    if reason == "burned-in-suspected":
        audit.flags.append(Flag("burned-in-suspected", "PixelData", detail))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=not settings.thumbnails)
            study, series, sop = (_text_of(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
            pkey = patient_key(_text_of(ds, "PatientID"), _text_of(ds, "IssuerOfPatientID"), study)
            audit.patient = pz.patient(pkey)
            audit.study = pz.uid(study) if study else ""
            audit.series = pz.uid(series) if series else ""
            audit.instance = pz.uid(sop) if sop else ""
            audit.sop_class = _text_of(ds, "SOPClassUID")
            audit.modality = _text_of(ds, "Modality")[:16]
            audit.series_number = _text_of(ds, "SeriesNumber")[:12]
            audit.instance_number = _text_of(ds, "InstanceNumber")[:12]
            if not _text_of(ds, "PatientID"):
                audit.flags.append(NO_PATIENT_ID_FLAG)
    except Exception:  # noqa: BLE001 - no usable header: the file stays ungrouped
        return audit
    if audit.sop_class and not risk.usual_sop_class(audit.sop_class):
        audit.flags.append(Flag("unusual-sop-class", "SOPClassUID", _sop_name(audit.sop_class)))
    if settings.thumbnails:
        audit.thumbnail = thumbnail_of_dataset(ds, settings.thumb_size)
    return audit


def audit_file(path: Path, plan: Plan, pz: Pseudonymizer, masker: Masker, settings: AuditSettings) -> InstanceAudit:
    """Audit one file through the de-identification engine (dry run); never raises for a bad file.

    Refusals are mapped exactly as ``sfr_gateway.deid.folder`` maps them.
    """
    try:
        result = deidentify_file(path, plan, pz, write=False, record_kept=True, keep_values=True)
    except DicomError as exc:
        return _quarantined(path, exc.reason, exc.detail, pz, settings)
    except PermissionError:
        return _quarantined(path, "unreadable", "permission denied", pz, settings)
    except OSError as exc:
        if exc.filename and Path(exc.filename) == path:
            return _quarantined(path, "unreadable", f"{type(exc).__name__} errno {exc.errno}", pz, settings)
        raise
    except RecursionError:
        return _quarantined(path, "unparsable", "nesting too deep", pz, settings)
    return _released(path, result, masker, plan, settings)


_WORKER: dict[str, Any] = {}


def _init_worker(plan: Plan, keys: PseudonymKeys, settings: AuditSettings) -> None:
    warnings.simplefilter("ignore")  # pydicom warnings can quote values: never print them
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    _WORKER.update(plan=plan, pz=Pseudonymizer.for_plan(keys, plan),
                   masker=Masker(keys.secret, reveal=settings.reveal), settings=settings)


def _work(path: Path) -> InstanceAudit:
    return audit_file(path, _WORKER["plan"], _WORKER["pz"], _WORKER["masker"], _WORKER["settings"])


def iter_audits(sources: Iterable[Path], plan: Plan, keys: PseudonymKeys, settings: AuditSettings, *,
                workers: int = 1, progress: Callable[[int, int], None] | None = None) -> Iterator[InstanceAudit]:
    """Audit every file under ``sources`` (the same files ``deidentify`` would take), one at a time.

    Results stream in input order; only the current file's dataset is in memory (per worker).
    ``progress(done, total)`` is called after each file.
    """
    paths = list(iter_inputs(sources))  # paths only (a stat walk), so progress knows the total
    yield from iter_audits_of(paths, plan, keys, settings, workers=workers, progress=progress)


def iter_audits_of(paths: list[Path], plan: Plan, keys: PseudonymKeys, settings: AuditSettings, *,
                   workers: int = 1, progress: Callable[[int, int], None] | None = None) -> Iterator[InstanceAudit]:
    """Audit exactly ``paths``, in order (``iter_audits`` over the files under sources, the
    audit as run over the files the run would release)."""
    total = len(paths)
    done = 0
    released: dict[str, str] = {}  # keyed SOP Instance UID -> the file released with it
    if workers <= 1:
        _init_worker(plan, keys, settings)
        results: Iterator[InstanceAudit] = (_work(p) for p in paths)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for audit in results:
                done += 1
                if progress:
                    progress(done, total)
                yield _deduplicated(audit, released)
        return
    with WorkerPool(workers, _init_worker, (plan, keys, settings),
                    died="an audit worker process died (out of memory?): run the audit again") as pool:
        for audit in pool.map(_work, paths, chunksize=8):
            done += 1
            if progress:
                progress(done, total)
            yield _deduplicated(audit, released)


def _deduplicated(audit: InstanceAudit, released: dict[str, str]) -> InstanceAudit:
    """As ``deidentify`` decides for inputs sharing a SOP Instance UID: the first is released, a
    copy of the same instance is a ``duplicate`` (released once), another instance is quarantined
    naming the other file (rule: duplicate SOP Instance UID, ``deid.sameness``)."""
    if audit.status != "released" or not audit.instance:
        return audit
    first = released.setdefault(audit.instance, audit.file)
    if first == audit.file:
        return audit
    same = compare_files(first, audit.file)
    if same.same:
        audit.status = "duplicate"
        audit.flags.append(Flag("duplicate-sop-instance", "SOPInstanceUID",
                                f"{DUPLICATE_RULE}: the same instance as {first} ({same.verdict}), released once"))
        return audit
    audit.status = "quarantined"
    audit.quarantine = {"reason": "duplicate-sop-instance", "other": first,
                        "detail": f"{DUPLICATE_RULE} shared with input {first}, {same.words} "
                                  f"({same.verdict}: {same.detail})"}
    audit.attributes = []
    return audit
