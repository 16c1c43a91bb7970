"""How many CPUs this process may use (its affinity, not the machine's count)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its scheduler affinity where the OS has one, else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
