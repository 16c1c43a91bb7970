"""The hands-on batch: de-identify whatever files it is given, in worker processes.

Outputs go to ``OUT/<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm`` (temp file +
rename, mode 0600; ``durable=True`` adds fsyncs); refused files are recorded as
``HOME/quarantine/<id>.json`` with their reason (a copy
of the source only when ``quarantine.keep_copies`` is set). Inputs are only ever read.
Selection and the consent gate are not applied here: that is the cron pipeline's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfr_gateway.deid.files import DeidResult, copy_pixels, deidentify_file, serialise
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.profile import compile_plan, load_profile
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys
from sfr_gateway.errors import DicomError, GatewayError, InputError
from sfr_gateway.faults import checkpoint
from sfr_gateway.fsutil import atomic_write_bytes, fsync_dir

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
    released: int = 0
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
            "seen": self.seen, "released": self.released, "masked": self.masked,
            "quarantined": sum(self.quarantined.values()), "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "patients": len(self.patients), "studies": len(self.studies), "series": len(self.series),
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "seconds": round(self.seconds, 3),
        }


def iter_inputs(sources: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under ``sources`` (sorted, symlinked folders not followed)."""
    for src in sources:
        src = Path(src)
        if src.is_file():
            yield src
        elif src.is_dir():
            for root, dirs, files in os.walk(src):
                dirs.sort()
                for name in sorted(files):
                    path = Path(root, name)
                    if path.is_file():
                        yield path
        else:
            raise InputError(f"source not found or not a file/folder: {src}")


def quarantine_id(path: Path) -> str:
    """A stable id for a refused source (hash of its path; the path itself may hold names)."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:20]


_MADE_DIRS: set[Path] = set()


def _write(path: Path, result: DeidResult, durable: bool) -> int:
    """Write the output into a temp file beside ``path``, then rename it (fsync if durable).

    A header-only result gets its header written and the source's pixel bytes copied in the
    kernel; otherwise the dataset is serialised straight into the file."""
    if path.parent not in _MADE_DIRS:
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(_MADE_DIRS) > 4096:
            _MADE_DIRS.clear()
        _MADE_DIRS.add(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    except FileNotFoundError:  # the folder went away since we made it
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
    return size


_WORKER: dict[str, Any] = {}


def _init_worker(spec: RunSpec, quiet: bool = True) -> None:
    if quiet:  # a worker process of ours: pydicom warnings can quote values, never print them
        warnings.simplefilter("ignore")
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    plan = spec.plan()
    _WORKER.update(spec=spec, plan=plan,
                   pz=Pseudonymizer(PseudonymKeys(spec.secret, spec.site_id), offset_range=plan.offset_range))


def _process(path: Path) -> tuple[str, Any]:
    spec: RunSpec = _WORKER["spec"]
    try:
        size = path.stat().st_size
        result = deidentify_file(path, _WORKER["plan"], _WORKER["pz"], write=False, record=False,
                                 pixels_in_place=True)
        checkpoint("mid-deidentify")
        written = _write(spec.output / result.relpath(), result, spec.durable)
        return "ok", (size, written, result.patient_pseudonym, result.study_uid, result.series_uid,
                      bool(result.mask))
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


def _quarantine(spec: RunSpec, path: Path, reason: str, detail: str) -> None:
    qid = quarantine_id(path)
    record: dict[str, str | None] = {"id": qid, "source": os.fsdecode(path), "reason": reason, "detail": detail,
              "profile": spec.profile, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if spec.keep_copies:
        try:
            atomic_write_bytes(spec.quarantine / f"{qid}.dcm", path.read_bytes(), mode=0o600)
            record["copy"] = f"{qid}.dcm"
        except OSError:
            record["copy"] = None
    atomic_write_bytes(spec.quarantine / f"{qid}.json",
                       (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=0o600)


def run(sources: Iterable[Path], spec: RunSpec, *, workers: int = 1,
        progress: Callable[[int], None] | None = None) -> RunSummary:
    """De-identify every file under ``sources`` into ``spec.output``; return the summary.

    The profile is validated before any file is read (ProfileError). Refused files never
    stop the run. ``workers > 1`` uses that many processes, each compiling the plan once.
    """
    spec.plan()  # fail fast on a bad profile, before reading anything
    paths = list(iter_inputs(sources))
    out_root = spec.output.resolve()
    paths = [p for p in paths if not p.resolve().is_relative_to(out_root)]
    summary = RunSummary(profile=spec.profile, options=spec.options, output=str(spec.output))
    started = time.perf_counter()

    def consume(path: Path, status: str, payload: Any) -> None:
        summary.seen += 1
        if status == "ok":
            size, out_size, patient, study, series, masked = payload
            summary.released += 1
            summary.bytes_in += size
            summary.bytes_out += out_size
            summary.patients.add(patient)
            summary.studies.add(study)
            summary.series.add(series)
            summary.masked += int(masked)
        else:
            reason, detail = payload
            summary.quarantined[reason] += 1
            _quarantine(spec, path, reason, detail)
            log.info("quarantined %s: %s", path, reason)
        if progress:
            progress(summary.seen)

    if workers <= 1 or len(paths) < 2:
        _init_worker(spec, quiet=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in paths:
                consume(path, *_process(path))
    else:
        ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
        chunk = max(1, min(32, len(paths) // (workers * 8) or 1))
        # concurrent.futures, not multiprocessing.Pool: a worker killed (OOM killer) makes this raise
        # instead of waiting forever for its lost task (found by the fault campaign)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec,)) as pool:
            try:
                for path, (status, payload) in zip(paths, pool.map(_process, paths, chunksize=chunk), strict=True):
                    consume(path, status, payload)
            except BrokenProcessPool:
                raise GatewayError("a de-identification worker process died (out of memory?); "
                                   "outputs written so far are complete, run again to finish") from None
    summary.seconds = time.perf_counter() - started
    return summary
