"""The HOME lock and the fault-injection hook, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sfr_gateway.errors import LockHeldError
from sfr_gateway.home.lock import exclusive


def _holder(path: Path, ready: Path) -> subprocess.Popen[bytes]:
    code = textwrap.dedent(f"""
        import time, pathlib
        from sfr_gateway.home.lock import exclusive
        with exclusive(pathlib.Path({str(path)!r})):
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "lock holder did not start"
        time.sleep(0.05)
    return proc


def test_second_holder_is_refused_at_once_and_lock_dies_with_its_process(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    proc = _holder(lock, tmp_path / "ready")
    try:
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}"):
            with exclusive(lock):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with exclusive(lock):  # a killed holder leaves no stale lock
        assert lock.read_text().strip() == str(os.getpid())


def test_fault_checkpoint_kills_only_at_the_named_point(tmp_path: Path) -> None:
    code = "from sfr_gateway.home.faults import checkpoint\ncheckpoint('a')\ncheckpoint('b')\ncheckpoint('b')\nprint('survived')"
    env = {**os.environ, "SFR_GATEWAY_FAULT": "b:2"}
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and "survived" not in killed.stdout
    env["SFR_GATEWAY_FAULT"] = "c"
    alive = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert alive.returncode == 0 and "survived" in alive.stdout
