"""Fault injection for the crash campaign and the bulkhead tests, off unless asked for.

``SFR_GATEWAY_FAULT=point[:n]`` kills the process (SIGKILL, no cleanup) the n-th time (default
1st) execution reaches ``checkpoint(point)``.

``SFR_GATEWAY_RAISE=point:text`` makes ``raise_at(point, subject)`` raise ``InjectedFault`` (an
unexpected exception, not a GatewayError) whenever ``text`` is part of ``subject`` (a source
path, say): deterministic in any worker process, whatever the order files are handled in.

Each costs one dictionary lookup per call otherwise.

For race tests, ``SFR_GATEWAY_PAUSE=point:DIR`` holds the process the first time it reaches
``checkpoint(point)``: it creates ``DIR/point.paused`` and waits (up to 120 s) for
``DIR/point.resume``, so another process can commit something exactly there.

"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "SFR_GATEWAY_FAULT"
RAISE_ENV = "SFR_GATEWAY_RAISE"
PAUSE_ENV = "SFR_GATEWAY_PAUSE"
_hits: dict[str, int] = {}
_paused: set[str] = set()


def _pause(point: str, spec: str) -> None:
    name, _, folder = spec.partition(":")
    if name != point or point in _paused:
        return
    _paused.add(point)
    Path(folder, f"{point}.paused").touch()
    resume = Path(folder, f"{point}.resume")
    deadline = time.monotonic() + 120
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


class InjectedFault(RuntimeError):
    """Raised by ``raise_at``: stands for a bug in the code it is raised from."""


def checkpoint(point: str) -> None:
    """Die (or pause) here if the fault campaign asked for it."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        _pause(point, pause)
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def raise_at(point: str, subject: str) -> None:
    """Raise InjectedFault here if asked to for ``subject``."""
    wanted = os.environ.get(RAISE_ENV)
    if not wanted:
        return
    name, _, text = wanted.partition(":")
    if name == point and text and text in subject:
        raise InjectedFault(f"fault injected at {point}")
