"""Read sources and scan outputs in worker processes (files are independent; results merge).

With ``workers <= 1`` (or few files) everything runs in this process. Workers are forked
processes; each source chunk returns its own :class:`TokenIndex`, merged here; output chunks
receive the finished index once, through the pool initializer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..home.workers import WorkerPool, usable_cpus
from . import tokens as tk
from .scan import OutputScan, scan_output
from .sources import read_source
from .uids import FileFacts

CHUNK = 48
DIED = "a verify worker process died (out of memory?): run verify again"
MIN_FILES_FOR_POOL = 2 * CHUNK

Progress = Callable[[str, int, int], None]

_INDEX: tk.TokenIndex | None = None


def default_workers() -> int:
    """One worker per CPU this process may use, at most 8."""
    return max(1, min(8, usable_cpus()))


def _chunks(items: Sequence[Path]) -> Iterator[list[Path]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start:start + CHUNK])


def _source_chunk(paths: list[Path]) -> tuple[tk.TokenIndex, list[FileFacts], int]:
    index = tk.TokenIndex()
    facts: list[FileFacts] = []
    unreadable = 0
    for path in paths:
        got = read_source(path, path.as_posix(), index)
        if got is None:
            unreadable += 1
        else:
            facts.append(got)
    return index, facts, unreadable


def read_sources(paths: Sequence[Path], workers: int,
                 progress: Progress | None) -> tuple[tk.TokenIndex, list[FileFacts], int]:
    """Tokens, UID facts and the number of unreadable files of all ``paths``."""
    index = tk.TokenIndex()
    facts: list[FileFacts] = []
    unreadable = done = 0
    if workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
        for path in paths:
            got = read_source(path, path.as_posix(), index)
            facts += [got] if got is not None else []
            unreadable += got is None
            done += 1
            if progress:
                progress("sources", done, len(paths))
        index.drop_public()
        return index, facts, unreadable
    with WorkerPool(workers, died=DIED) as pool:
        for part, chunk_facts, chunk_bad in pool.map(_source_chunk, _chunks(paths)):
            index.merge(part)
            facts += chunk_facts
            unreadable += chunk_bad
            done += len(chunk_facts) + chunk_bad
            if progress:
                progress("sources", done, len(paths))
    index.drop_public()
    return index, facts, unreadable


def _init_worker(index: tk.TokenIndex) -> None:
    global _INDEX
    _INDEX = index


def _output_chunk(job: tuple[Path, list[Path], bool]) -> list[OutputScan]:
    root, paths, pixels = job
    if _INDEX is None:
        raise RuntimeError("verify worker used before its initialiser ran")
    return [scan_output(p, _rel(p, root), _INDEX, include_pixel_data=pixels) for p in paths]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def scan_outputs(root: Path, paths: Sequence[Path], index: tk.TokenIndex, *, include_pixel_data: bool,
                 workers: int, progress: Progress | None) -> list[OutputScan]:
    """Scan every output file (in order)."""
    scans: list[OutputScan] = []
    if workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
        for path in paths:
            scans.append(scan_output(path, _rel(path, root), index, include_pixel_data=include_pixel_data))
            if progress:
                progress("outputs", len(scans), len(paths))
        return scans
    jobs = [(root, chunk, include_pixel_data) for chunk in _chunks(paths)]
    with WorkerPool(workers, _init_worker, (index,), died=DIED) as pool:
        for part in pool.map(_output_chunk, jobs):
            scans += part
            if progress:
                progress("outputs", len(scans), len(paths))
    return scans
