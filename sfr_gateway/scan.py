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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SelectionRules
from .dicomio import HeaderFacts, read_header
from .errors import DicomError, InputError
from .ledger import Ledger
from .ledger import instances as sql
from .select import InstanceFacts, eligibility

log = logging.getLogger(__name__)

CHUNK = 256


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
    complete: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "complete": self.complete,
            "this_scan": {k: getattr(self, k) for k in
                          ("seen", "read", "unchanged", "new", "changed", "unreadable", "missing", "moved")},
            **self.summary,
        }


def walk(root: bytes) -> Iterator[tuple[bytes, str | None]]:
    """Yield (file path, None) for each regular file below ``root``, or (path, reason) when a
    path cannot be walked. Directory symlinks are followed once; loops are reported."""
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield folder, _os_reason(exc)
            continue
        if (st.st_dev, st.st_ino) in visited:
            yield folder, "symlink-loop"
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield folder, _os_reason(exc)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subdirs.append(entry.path)
                elif entry.is_file():
                    yield entry.path, None
                elif entry.is_symlink():
                    os.stat(entry.path)  # raises for dangling links and loops
                # sockets, fifos and devices are not exports: ignored
            except OSError as exc:
                yield entry.path, _os_reason(exc)
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


def _stat_key(path: bytes) -> tuple[int, int]:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FileNotFoundError(path)
    return st.st_size, st.st_mtime_ns


def scan(
    ledger: Ledger,
    sources: Sequence[Path | str | bytes],
    rules: SelectionRules,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Index every file under ``sources`` (never modified) and return what this scan did."""
    roots = []
    for src in sources:
        raw = os.fsencode(src)
        if not os.path.isdir(raw):
            raise InputError(f"source folder not found: {os.fsdecode(raw)}")
        roots.append(os.path.abspath(raw))
    result = ScanResult(scan_id=sql.start_scan(ledger, roots))
    known = sql.known_files(ledger, roots)
    seen: set[bytes] = set()
    indexed: list[tuple[bytes, int, int, HeaderFacts, str | None]] = []
    unreadable: list[tuple[bytes, int, int, str]] = []

    def flush() -> None:
        if indexed:
            sql.record_indexed(ledger, result.scan_id, indexed)
            indexed.clear()
        if unreadable:
            sql.record_unreadable(ledger, result.scan_id, unreadable)
            unreadable.clear()

    status = "interrupted"
    try:
        for root in roots:
            for path, problem in walk(root):
                if path in seen:
                    continue
                seen.add(path)
                result.seen += 1
                if progress:
                    progress(result.seen)
                try:
                    size, mtime = _stat_key(path) if problem is None else (0, 0)
                except OSError as exc:
                    problem, size, mtime = _os_reason(exc), 0, 0
                before = known.get(path)
                if before is not None and before[:2] == (size, mtime) and problem is None \
                        and before[2] != "missing":
                    result.unchanged += 1
                    continue
                if before is None:
                    result.new += 1
                else:
                    result.changed += 1
                if problem is not None:
                    unreadable.append((path, size, mtime, problem))
                    result.unreadable += 1
                else:
                    result.read += 1
                    try:
                        facts, size, mtime = read_header(path)
                    except DicomError as exc:
                        unreadable.append((path, size, mtime, exc.reason))
                        result.unreadable += 1
                    else:
                        indexed.append((path, size, mtime, facts, eligibility(_facts_for_selection(facts), rules)))
                if len(indexed) + len(unreadable) >= CHUNK:
                    flush()
        flush()
        gone = [p for p, (_, _, state) in known.items() if p not in seen and state != "missing"]
        result.missing, result.moved = sql.mark_missing(ledger, gone)
        status = "complete"
        result.complete = True
    finally:
        sql.finish_scan(ledger, result.scan_id, status)
    result.summary = sql.summary(ledger)
    ledger.record_event("scan", "scan", status, {
        "roots": [r.decode("utf-8", "backslashreplace") for r in roots],
        **{k: getattr(result, k) for k in ("seen", "read", "unchanged", "unreadable", "missing", "moved")},
    })
    log.info("scan %s: %d files seen, %d read, %d unreadable", status, result.seen, result.read, result.unreadable)
    return result
