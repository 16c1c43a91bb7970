"""Interrupted runs (issue 17): Ctrl-C (SIGINT to the whole foreground process group, as a
terminal sends it) or a service stop (SIGTERM to the group, as systemd sends it) during `run`
prints one clear line and no traceback from any process, exits 130 (documented), leaves a batch
in `packaging` that `status` explains, and the next run delivers everything exactly once.

A real `sfr-gateway run` in its own session, held at a checkpoint in the middle of packaging a
batch (``SFR_GATEWAY_PAUSE``: the de-identification workers are alive and busy then), and a real
signal sent to its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from operation_fixtures import STAMP
from pipeline_fixtures import Site, site  # noqa: F401

from sfr_gateway.errors import EXIT_CODES, Interrupted

ELIGIBLE = 84


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the checkpoint"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_says_so_in_one_line_and_the_next_run_resumes(site: Site, cli, tmp_path: Path,
                                                                      signum: int) -> None:
    site.consent_all(cli)
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfr_gateway", "--home", str(site.home), "run", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "SFR_GATEWAY_PAUSE": f"mid-package:{pause}"})
    _wait_for(pause / "mid-package.paused", proc)
    time.sleep(0.5)  # the workers de-identify ahead meanwhile
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == Interrupted.exit_code == 130
    lines = [STAMP.sub("", line, count=1) for line in err.strip().splitlines()]  # timestamped: not a terminal
    assert lines == ["interrupted: nothing was sent half-way; run again to resume"], err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert 130 in EXIT_CODES and "| 130 |" in (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert site.batches() == []  # nothing left for the central host

    status = site.gateway("status")
    assert status.returncode == 0, status.stderr
    assert "packaging: 1 batch left by a run that was interrupted" in status.stdout
    assert "nothing of it was sent" in status.stdout

    again = site.gateway("run")
    assert again.returncode == 0, again.stderr
    datasets = site.open_all()
    assert len(datasets) == ELIGIBLE == len({ds.SOPInstanceUID for ds in datasets})
    assert "packaging" not in site.gateway("status").stdout
