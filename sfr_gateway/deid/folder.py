"""The hands-on batch: de-identify whatever files it is given, in worker processes.

Outputs go to ``OUT/<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm`` (temp file +
rename, mode 0600; ``durable=True`` adds fsyncs). An output is never overwritten: inputs that
share a SOP Instance UID are compared (``deid.sameness``), a copy of one instance (byte-identical,
or the same dataset in another transfer syntax) is released once and counted as a duplicate, a
conflicting one is quarantined naming the other path. Refused files are recorded as
``HOME/quarantine/<id>.json`` with their reason (a copy
of the source only when ``quarantine.keep_copies`` is set). Inputs are only ever read.
Selection and the consent gate are not applied here: that is the cron pipeline's job.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfr_gateway.deid.files import DeidResult, copy_pixels, deidentify_file, serialise
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.profile import compile_plan, load_profile
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys
from sfr_gateway.deid.rules import DUPLICATE_RULE
from sfr_gateway.deid.sameness import compare_files
from sfr_gateway.errors import DicomError, InputError
from sfr_gateway.home.faults import checkpoint
from sfr_gateway.home.fsutil import atomic_write_bytes, fsync_dir
from sfr_gateway.home.workers import WorkerPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs; picklable, so each process compiles the plan once."""

    profile: str
    options: tuple[str, ...]
    site_overrides: tuple[dict[str, Any], ...]
    site_private_keep: tuple[dict[str, Any], ...]
    output: Path
    quarantine: Path
    keep_copies: bool
    secret: bytes = field(repr=False)
    site_id: str
    durable: bool = False
    image_compression: str = "none"  # run only: [batch] image_compression (deid.recode)

    def plan(self) -> Plan:
        """Load, validate and compile the profile (cached per process)."""
        return compile_plan(load_profile(self.profile, options=self.options,
                                         site_overrides=list(self.site_overrides),
                                         site_private_keep=list(self.site_private_keep)))


@dataclass
class RunSummary:
    """Counts of one run (no patient values: pseudonyms and reasons only)."""

    profile: str
    options: tuple[str, ...]
    seen: int = 0
    released: int = 0  # inputs whose de-identified output is in OUT (written now or by an earlier run)
    written: int = 0  # output files this run wrote
    duplicates: int = 0  # inputs whose instance another input of this run already released
    duplicate_of: list[tuple[str, str]] = field(default_factory=list)  # (input, the input released)
    quarantined: Counter[str] = field(default_factory=Counter)
    patients: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    masked: int = 0
    seconds: float = 0.0
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "profile": self.profile, "options": list(self.options), "output": self.output,
            "seen": self.seen, "released": self.released, "written": self.written, "duplicates": self.duplicates,
            "duplicate_of": [{"source": a, "released_as": b} for a, b in self.duplicate_of], "masked": self.masked,
            "quarantined": sum(self.quarantined.values()), "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "patients": len(self.patients), "studies": len(self.studies), "series": len(self.series),
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "seconds": round(self.seconds, 3),
        }


def iter_inputs(sources: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under ``sources`` (sorted, symlinked folders not followed)."""
    for path, _ in _walk_inputs(sources):
        yield path


def _walk_inputs(sources: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """(path, is a symbolic link) of every regular file under ``sources``, sorted by name within
    each folder; symlinked folders are not followed. File types come from the directory entries:
    only symbolic links cost a stat."""
    for src in sources:
        src = Path(src)
        if src.is_file():
            yield src, src.is_symlink()
        elif src.is_dir():
            yield from _walk_folder(src)
        else:
            raise InputError(f"source not found or not a file/folder: {src}")


def _walk_folder(folder: Path) -> Iterator[tuple[Path, bool]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:  # unreadable or vanished: as os.walk, go on with the rest
        return
    subfolders = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry)
            elif entry.is_file():
                yield Path(entry.path), entry.is_symlink()
        except OSError:
            continue
    for entry in subfolders:
        yield from _walk_folder(Path(entry.path))


def quarantine_id(path: Path) -> str:
    """A stable id for a refused source (hash of its path; the path itself may hold names)."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:20]


_MADE_DIRS: set[Path] = set()


def _write(path: Path, result: DeidResult, durable: bool) -> tuple[int, str]:
    """Write the output into a new temp file beside ``path`` (fsync if durable); return its
    size and name. :func:`_commit` then puts it in place (or not: see the module docstring).

    A header-only result gets its header written and the source's pixel bytes copied in the
    kernel; otherwise the dataset is serialised straight into the file."""
    if path.parent not in _MADE_DIRS:
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(_MADE_DIRS) > 4096:
            _MADE_DIRS.clear()
        _MADE_DIRS.add(path.parent)
    try:
        fd, tmp = _temp_beside(path)
    except FileNotFoundError:  # the folder went away since we made it
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            if result.head is not None and result.pixels is not None:
                fh.write(result.head)
                copy_pixels(result.pixels, fh)
            else:
                serialise(result.dataset, fh)
            size = fh.tell()
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return size, tmp


_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK, errno.EACCES)


def _commit(tmp: str, path: Path, durable: bool) -> bool:
    """Give the finished temp file its name unless an output already has it (then the temp file
    stays for the caller to compare and delete); True when it was put in place.

    A hard link is the atomic "create unless it exists"; where the filesystem has none, an
    existence check and a rename (one committer per run: the parent process)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(path):
            return False
        os.replace(tmp, path)
    else:
        os.unlink(tmp)
    if durable:
        fsync_dir(path.parent)
    return True


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_TEMP_SEQUENCE = itertools.count()


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new hidden temp file (0600) beside ``path``: named by process and sequence (unique
    while the process lives; one left by a crash is never reused), mkstemp's random name if
    that one exists."""
    tmp = os.path.join(path.parent, f".{path.name}.{os.getpid()}-{next(_TEMP_SEQUENCE)}.tmp")
    try:
        return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
    except FileExistsError:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


_WORKER: dict[str, Any] = {}


def init_worker(spec: RunSpec, quiet: bool = True) -> None:
    """Set up this process to de-identify with ``spec`` (the plan compiled once): a pool's
    initializer, or the parent itself when it works inline."""
    if quiet:  # a worker process of ours: pydicom warnings can quote values, never print them
        warnings.simplefilter("ignore")
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    plan = spec.plan()
    _WORKER.update(spec=spec, plan=plan,
                   pz=Pseudonymizer.for_plan(PseudonymKeys(spec.secret, spec.site_id), plan))


def worker_deidentify(path: Path, **options: Any) -> DeidResult:
    """``deid.files.deidentify_file`` with this process's plan and pseudonymiser (after
    :func:`init_worker`); ``options`` as there."""
    return deidentify_file(path, _WORKER["plan"], _WORKER["pz"], **options)


def worker_spec() -> RunSpec:
    """The settings this process was set up with (:func:`init_worker`)."""
    spec: RunSpec = _WORKER["spec"]
    return spec


def _process(path: Path) -> tuple[str, Any]:
    spec: RunSpec = _WORKER["spec"]
    try:
        result = worker_deidentify(path, write=False, record=False, pixels_in_place=True)
        size = result.pixels.size if result.pixels is not None else path.stat().st_size
        checkpoint("mid-deidentify")
        written, tmp = _write(spec.output / result.relpath(), result, spec.durable)
        return "ok", (size, written, result.patient_pseudonym, result.study_uid, result.series_uid,
                      bool(result.mask), str(result.relpath()), tmp)
    except DicomError as exc:
        return "refused", (exc.reason, exc.detail)
    except PermissionError:
        return "refused", ("unreadable", "permission denied")
    except OSError as exc:
        if exc.filename and Path(exc.filename) == path:
            return "refused", ("unreadable", f"{type(exc).__name__} errno {exc.errno}")
        raise
    except RecursionError:
        return "refused", ("unparsable", "nesting too deep")


def quarantine(spec: RunSpec, path: Path, reason: str, detail: str, other: str | None = None) -> None:
    """Record a refused source as ``<quarantine>/<id>.json`` (its reason; a copy when
    ``keep_copies``). Paths and reasons only, never a value."""
    qid = quarantine_id(path)
    record: dict[str, str | None] = {"id": qid, "source": os.fsdecode(path), "reason": reason, "detail": detail,
              "profile": spec.profile, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if other is not None:
        record["other"] = other
    if spec.keep_copies:
        try:
            atomic_write_bytes(spec.quarantine / f"{qid}.dcm", path.read_bytes(), mode=0o600)
            record["copy"] = f"{qid}.dcm"
        except OSError:
            record["copy"] = None
    atomic_write_bytes(spec.quarantine / f"{qid}.json",
                       (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=0o600)


def _outside(inputs: Iterable[tuple[Path, bool]], out_root: Path) -> list[Path]:
    """The input paths not inside ``out_root`` (an output folder under a source): each folder
    resolved once, a symbolic link by its target."""
    inside: dict[Path, bool] = {}
    kept = []
    for path, link in inputs:
        folder = path.parent
        if folder not in inside:
            inside[folder] = folder.resolve().is_relative_to(out_root)
        if not (inside[folder] or (link and path.resolve().is_relative_to(out_root))):
            kept.append(path)
    return kept


def run(sources: Iterable[Path], spec: RunSpec, *, workers: int = 1,
        progress: Callable[[int], None] | None = None,
        on_file: Callable[[Path, str, dict[str, str]], None] | None = None) -> RunSummary:
    """De-identify every file under ``sources`` into ``spec.output``; return the summary.

    The profile is validated before any file is read (ProfileError). Refused files never
    stop the run. ``workers > 1`` uses that many processes, each compiling the plan once.
    ``on_file(path, status, info)`` hears what became of each input, in input order: status
    ``released`` (info ``output``: its path under OUT), ``duplicate`` (``output``, ``same_as``:
    the input released) or ``quarantined`` (``reason``, ``detail``, and ``other`` for a conflict).
    """
    spec.plan()  # fail fast on a bad profile, before reading anything
    paths = _outside(_walk_inputs(sources), spec.output.resolve())
    summary = RunSummary(profile=spec.profile, options=spec.options, output=str(spec.output))
    started = time.perf_counter()
    owners: dict[str, Path] = {}  # output path -> the input of this run it is the output of

    def refuse(path: Path, reason: str, detail: str, other: str | None = None) -> None:
        summary.quarantined[reason] += 1
        quarantine(spec, path, reason, detail, other)
        log.info("quarantined %s: %s", path, reason)
        if on_file:
            on_file(path, "quarantined", {"reason": reason, "detail": detail, **({"other": other} if other else {})})

    def consume(path: Path, status: str, payload: Any) -> None:
        summary.seen += 1
        if status == "ok":
            size, out_size, patient, study, series, masked, rel, tmp = payload
            owner = owners.get(rel)
            if owner is None and _commit(tmp, spec.output / rel, spec.durable):
                summary.written += 1
                summary.bytes_out += out_size
                fate = "released"
            else:  # an output with this SOP Instance UID exists: never overwritten
                try:
                    same = compare_files(tmp, spec.output / rel)
                finally:
                    os.unlink(tmp)
                if not same.same:
                    other = os.fsdecode(owner) if owner is not None else os.fsdecode(spec.output / rel)
                    whose = f"input {other}" if owner is not None else f"the existing output {other}"
                    refuse(path, "duplicate-sop-instance",
                           f"{DUPLICATE_RULE}: shared with {whose}, {same.words} "
                           f"({same.verdict}: {same.detail}); nothing was overwritten", other)
                    if progress:
                        progress(summary.seen)
                    return
                fate = "released" if owner is None else "duplicate"
            summary.bytes_in += size
            if fate == "duplicate":
                summary.duplicates += 1
                summary.duplicate_of.append((os.fsdecode(path), os.fsdecode(owners[rel])))
                log.info("duplicate %s: same instance as %s", path, owners[rel])
            else:
                owners[rel] = path
                summary.released += 1
                summary.patients.add(patient)
                summary.studies.add(study)
                summary.series.add(series)
                summary.masked += int(masked)
            if on_file:
                info = {"output": rel} if fate == "released" else {"output": rel, "same_as": os.fsdecode(owners[rel])}
                on_file(path, fate, info)
        else:
            refuse(path, *payload)
        if progress:
            progress(summary.seen)

    if workers <= 1 or len(paths) < 2:
        init_worker(spec, quiet=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in paths:
                consume(path, *_process(path))
    else:
        chunk = max(1, min(32, len(paths) // (workers * 8) or 1))
        with WorkerPool(workers, init_worker, (spec,), died="a de-identification worker process died (out of memory?); "
                        "outputs written so far are complete, run again to finish") as pool:
            for path, (status, payload) in zip(paths, pool.map(_process, paths, chunksize=chunk), strict=True):
                consume(path, status, payload)
    summary.seconds = time.perf_counter() - started
    return summary
