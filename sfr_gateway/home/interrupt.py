"""Stopping cleanly on Ctrl-C (SIGINT) or a service stop (SIGTERM).

The parent process owns the interrupt: worker processes ignore SIGINT (a Ctrl-C reaches the
whole foreground process group, and a worker's own KeyboardInterrupt would print a traceback
per worker) and die by SIGTERM when the parent's pool terminates them. In the parent, SIGTERM
is turned into the same KeyboardInterrupt as Ctrl-C, so both unwind through the same
``finally`` blocks: transactions roll back, workers are terminated, the lock is released.
Nothing half-done is ever recorded as done (the crash-safety every stage already has), so the
next run resumes; a batch row left in ``packaging`` is undone by it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

MESSAGE = "interrupted: nothing was sent half-way; run again to resume"


def ignore_in_worker() -> None:
    """Pool initializer: the parent handles Ctrl-C; SIGTERM (the pool's terminate) just ends us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM unwinds like Ctrl-C (a systemd stop, ``kill``)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
