"""Worker processes: the one way ``deidentify``, ``run``, ``scan``, ``audit`` and ``verify``
start them, feed them and stop them.

Files are independent, so each command maps a function over its files in a pool of forked
processes (the parent's imports and compiled plan are inherited, nothing is pickled but the
arguments and results). A ``concurrent.futures`` pool, not ``multiprocessing.Pool``: when a
worker dies (OOM killer, segfault) the latter waits forever for the lost task, and a cron run
would hang holding the lock; this one raises, and :func:`WorkerPool.map` turns that into a
:class:`GatewayError` naming what to do.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..errors import GatewayError
from .interrupt import ignore_in_worker

T = TypeVar("T")
R = TypeVar("R")

def usable_cpus() -> int:
    """CPUs this process may run on: its scheduler affinity where the OS has one, else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _die_with(parent: int, initializer: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    """Worker set-up of a pool that must not outlive its parent: a SIGKILLed ``run`` must not
    leave workers behind holding the HOME lock they inherited."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    if initializer is not None:
        initializer(*args)


def _set_up(initializer: Callable[..., None] | None, args: tuple[Any, ...]) -> None:
    """Every worker: Ctrl-C is the parent's to handle (a terminal sends SIGINT to the whole
    process group: each worker's KeyboardInterrupt would print a traceback), SIGTERM (the
    parent's ``terminate``) just ends it; then the command's own set-up."""

    ignore_in_worker()
    if initializer is not None:
        initializer(*args)


class WorkerPool:
    """``n`` forked worker processes, each set up once by ``initializer(*initargs)``.

    ``died`` is the error raised when a worker dies (say what was done and what to do).
    ``die_with_parent`` kills the workers with the parent process (Linux), for ``run``.
    """

    def __init__(self, n: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (), *,
                 died: str = "a worker process died (out of memory?): run again",
                 die_with_parent: bool = False) -> None:
        self.n = n
        self.died = died
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        setup: Callable[..., None] = _set_up
        args: tuple[Any, ...] = (initializer, initargs)
        if die_with_parent:
            setup, args = _die_with, (os.getpid(), setup, args)
        self.pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=setup, initargs=args)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for the running tasks; on an error, drop the ones not started."""
        self.pool.shutdown(wait=True, cancel_futures=exc[0] is not None)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, chunksize: int = 1) -> Iterator[R]:
        """``fn`` over ``items``, results in order (every item submitted at once)."""
        return self._guarded(self.pool.map(fn, items, chunksize=chunksize))

    def lookahead(self, fn: Callable[[T], R], items: Iterable[T], *, per_worker: int, max_bytes: int,
                  size: Callable[[R], int]) -> Iterator[R]:
        """``fn`` over ``items``, results in order, computed ahead of the consumer: up to
        ``per_worker`` items per worker submitted, none more while finished results not yet
        consumed hold ``max_bytes`` (by ``size``). ``Executor.map`` would submit everything at
        once and let finished results pile up in memory."""
        return self._guarded(self._bounded(fn, iter(items), per_worker, max_bytes, size))

    def _bounded(self, fn: Callable[[T], R], todo: Iterator[T], per_worker: int, max_bytes: int,
                 size: Callable[[R], int]) -> Iterator[R]:
        pending: collections.deque[Future[R]] = collections.deque()
        held = [0]
        lock = threading.Lock()

        def bytes_of(future: Future[R]) -> int:
            if future.cancelled() or future.exception() is not None:
                return 0
            return size(future.result())

        def finished(future: Future[R]) -> None:  # in the executor's thread
            with lock:
                held[0] += bytes_of(future)

        def fill() -> None:
            while len(pending) < per_worker * self.n:
                with lock:
                    if pending and held[0] >= max_bytes:
                        return
                item = next(todo, _END)
                if item is _END:
                    return
                future = self.pool.submit(fn, item)
                future.add_done_callback(finished)
                pending.append(future)

        fill()
        while pending:
            future = pending.popleft()
            result = future.result()
            with lock:
                held[0] -= bytes_of(future)
            fill()
            yield result

    def _guarded(self, results: Iterator[R]) -> Iterator[R]:
        try:
            yield from results
        except BrokenProcessPool:
            raise GatewayError(self.died) from None

    def terminate(self) -> None:
        """Stop now: busy workers are killed, tasks not started dropped (``run``: a result
        computed ahead is worth nothing once the run ends)."""
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


_END: Any = object()
