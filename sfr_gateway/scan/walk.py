"""Scan: walk PACS export folders (read-only), read headers, index every instance in the ledger.

Incremental: a file whose (path, size, mtime) is already recorded is not opened again; files
that disappeared are marked missing (or moved, when the same SOP instance shows up elsewhere).
Work is committed in chunks, so an interrupted scan leaves a consistent ledger and the next
scan completes it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DicomError, InputError
from ..home.config import SelectionRules
from ..home.logfile import file_only
from ..ledger import Ledger
from ..ledger import instances as sql
from .eligibility import InstanceFacts, eligibility
from .header import HeaderFacts, read_header

log = logging.getLogger(__name__)

CHUNK = 256
PARALLEL_THRESHOLD = 256  # fewer files to read than this: not worth starting workers


@dataclass
class ScanResult:
    """What one scan did, plus the ledger's summary afterwards."""

    scan_id: int
    seen: int = 0
    read: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    unreadable: int = 0
    missing: int = 0
    moved: int = 0
    shared_uid: int = 0  # files read now whose SOP Instance UID another file also has
    complete: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "complete": self.complete,
            "this_scan": {k: getattr(self, k) for k in
                          ("seen", "read", "unchanged", "new", "changed", "unreadable", "missing", "moved",
                           "shared_uid")},
            **self.summary,
        }


def walk(root: bytes) -> Iterator[tuple[bytes, str | None, os.stat_result | None]]:
    """Yield (file path, None, its stat) for each regular file below ``root``, or (path, reason,
    None) when a path cannot be walked. Directory symlinks are followed once; loops are reported.
    Files are stat'ed through their directory entry (``fstatat``: no path lookup per file)."""
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield folder, _os_reason(exc), None
            continue
        if (st.st_dev, st.st_ino) in visited:
            yield folder, "symlink-loop", None
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield folder, _os_reason(exc), None
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subdirs.append(entry.path)
                elif entry.is_file():
                    file_st = entry.stat()
                    if stat.S_ISREG(file_st.st_mode):
                        yield entry.path, None, file_st
                    else:  # replaced by something else since the directory was listed
                        yield entry.path, "vanished", None
                elif entry.is_symlink():
                    os.stat(entry.path)  # raises for dangling links and loops
                # sockets, fifos and devices are not exports: ignored
            except OSError as exc:
                yield entry.path, _os_reason(exc), None
        stack.extend(reversed(subdirs))


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink-loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission-denied"
    if exc.errno == errno.ENOENT:
        return "vanished"
    return "io-error"


def _facts_for_selection(f: HeaderFacts) -> InstanceFacts:
    return InstanceFacts(
        sop_class_uid=f.sop_class_uid, modality=f.modality, body_part=f.body_part, study_date=f.study_date,
        study_description=f.study_description, series_description=f.series_description,
        protocol_name=f.protocol_name, image_type=f.image_type,
    )



Outcome = tuple[bytes, int, int, "HeaderFacts | str"]


def read_chunk(paths: list[tuple[bytes, int, int]]) -> list[Outcome]:
    """Read the headers of ``paths``: (path, size, mtime, facts or unreadable reason) each.
    Runs in worker processes; touches no ledger."""
    out: list[Outcome] = []
    for path, size, mtime in paths:
        try:
            facts, size, mtime = read_header(path)
        except DicomError as exc:
            out.append((path, size, mtime, exc.reason))
        else:
            out.append((path, size, mtime, facts))
    return out


def _chunks(items: list[tuple[bytes, int, int]], size: int) -> Iterator[list[tuple[bytes, int, int]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _read_all(todo: list[tuple[bytes, int, int]], workers: int) -> Iterator[Outcome]:
    """Header facts of every file in ``todo``, in order; in worker processes when it pays."""
    if workers <= 1 or len(todo) < PARALLEL_THRESHOLD:
        for chunk in _chunks(todo, 64):
            yield from read_chunk(chunk)
        return
    from ..home.workers import WorkerPool  # here: an unchanged rescan reads no header and starts no worker

    if sys.platform.startswith("linux"):
        # fork after importing the parser once here: forkserver/spawn workers would each import
        # pydicom again (~0.4 s apiece, as much as reading 400 headers). The ledger connection
        # is inherited but never used by the workers (they only read headers and return facts).
        import pydicom  # noqa: F401
    with WorkerPool(workers, died="a scan worker process died (out of memory?): nothing of its files was "
                    "indexed; scan again") as pool:
        for outcome in pool.map(read_chunk, _chunks(todo, 64)):
            yield from outcome


def scan(
    ledger: Ledger,
    sources: Sequence[Path | str | bytes],
    rules: SelectionRules,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ScanResult:
    """Index every file under ``sources`` (never modified) and return what this scan did.

    First a walk that only stats (cheap, and it gives the total), then the headers of new and
    changed files are read, in ``workers`` processes for large batches, and committed in chunks.
    ``progress(done)`` counts files; ``on_total(files)`` is called once the walk knows how many.
    """
    roots = []
    for src in sources:
        raw = os.fsencode(src)
        if not os.path.isdir(raw):
            raise InputError(f"source folder not found: {os.fsdecode(raw)}")
        roots.append(os.path.abspath(raw))
    result = ScanResult(scan_id=sql.start_scan(ledger, roots))
    workers = workers or os.cpu_count() or 1
    status = "interrupted"
    try:
        known = sql.known_files(ledger, roots)
        seen: set[bytes] = set()
        todo: list[tuple[bytes, int, int]] = []
        unreadable: list[tuple[bytes, int, int, str]] = []
        for root in roots:
            for path, problem, st in walk(root):
                if path in seen:
                    continue
                seen.add(path)
                result.seen += 1
                size, mtime = (st.st_size, st.st_mtime_ns) if st is not None else (0, 0)
                before = known.get(path)
                if before is not None and before[:2] == (size, mtime) and problem is None \
                        and before[2] != "missing":
                    result.unchanged += 1
                    continue
                result.new += before is None
                result.changed += before is not None
                if problem is None:
                    todo.append((path, size, mtime))
                else:
                    unreadable.append((path, size, mtime, problem))
        result.unreadable += len(unreadable)
        sql.record_unreadable(ledger, result.scan_id, unreadable)
        indexed: list[tuple[bytes, int, int, HeaderFacts, str | None]] = []
        unreadable = []
        done = result.unchanged + result.unreadable
        if on_total:
            on_total(result.seen)
        for path, size, mtime, facts in _read_all(todo, workers):
            result.read += 1
            if isinstance(facts, str):
                unreadable.append((path, size, mtime, facts))
                result.unreadable += 1
            else:
                indexed.append((path, size, mtime, facts, eligibility(_facts_for_selection(facts), rules)))
            if len(indexed) + len(unreadable) >= CHUNK:
                sql.record_indexed(ledger, result.scan_id, indexed)
                sql.record_unreadable(ledger, result.scan_id, unreadable)
                indexed, unreadable = [], []
            done += 1
            if progress:
                progress(done)
        sql.record_indexed(ledger, result.scan_id, indexed)
        sql.record_unreadable(ledger, result.scan_id, unreadable)
        gone = [p for p, (_, _, state) in known.items() if p not in seen and state != "missing"]
        result.missing, result.moved = sql.mark_missing(ledger, gone, result.scan_id)
        sql.prune_shared(ledger)
        result.shared_uid = sql.shared_in_scan(ledger, result.scan_id)
        status = "complete"
        result.complete = True
    finally:
        sql.finish_scan(ledger, result.scan_id, status)
    result.summary = sql.summary(ledger)
    ledger.record_event("scan", "scan", status, {
        "roots": [r.decode("utf-8", "backslashreplace") for r in roots],
        **{k: getattr(result, k) for k in ("seen", "read", "unchanged", "unreadable", "missing", "moved",
                                           "shared_uid")},
    })
    log.info("scan %s: %d files seen, %d read, %d unreadable", status, result.seen, result.read, result.unreadable)
    if result.shared_uid:
        file_only.info("scan: %d file(s) read now share their SOP Instance UID with another file "
                       "(`sfr-gateway scan` lists them)", result.shared_uid)
    return result
