"""Fault injection for the crash campaign: ``SFR_GATEWAY_FAULT=point[:n]`` kills the process
(SIGKILL, no cleanup) the n-th time (default 1st) execution reaches ``checkpoint(point)``.

Off unless the variable is set; costs one dictionary lookup per checkpoint otherwise.
"""

from __future__ import annotations

import os
import signal

ENV = "SFR_GATEWAY_FAULT"
_hits: dict[str, int] = {}


def checkpoint(point: str) -> None:
    """Die here if the fault campaign asked for it."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
