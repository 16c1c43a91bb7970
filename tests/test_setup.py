"""The test command's setup (scripts/setup.sh) and the missing-tool policy (tests/tool_fixtures.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tool_fixtures import require_tool

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

_PROBE = '''
import pytest
from tool_fixtures import require_tool

def test_called():
    require_tool("sfr-no-such-tool", package="sfr-no-such-package")

@pytest.mark.tool("sfr-no-such-tool")
def test_marked():
    pass

def test_present():
    assert require_tool("sh")
'''


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(_PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tool_fixtures", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-rs", "test_probe.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_missing_tool_is_a_counted_skip(tmp_path: Path) -> None:
    run = _pytest(tmp_path, None)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 2 skipped" in run.stdout
    assert "2 skipped: missing tools: sfr-no-such-tool" in run.stdout
    assert "Debian package sfr-no-such-package" in run.stdout  # the reason names what to install


def test_missing_tool_fails_under_ci(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "true")
    assert run.returncode == 1, run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1], run.stdout
    assert run.stdout.count("missing tool: sfr-no-such-tool") >= 2 and "1 passed" in run.stdout


def test_setup_prints_the_apt_line_and_stops_when_not_root() -> None:
    require_tool("dpkg-query", package="dpkg")
    # A copy of the script in a folder everyone can reach (with a space), as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="sfr setup "))
    try:
        os.chmod(base, 0o755)
        (base / "scripts").mkdir()
        (base / ".ci").mkdir()
        shutil.copy(ROOT / "scripts/setup.sh", base / "scripts/setup.sh")
        (base / ".ci/apt-packages.txt").write_text("# comment\nsh-is-not-this\ndpkg  # installed\n\nsfr-no-such-package\n")
        for path in (base / "scripts", base / ".ci"):
            os.chmod(path, 0o755)
        cmd = ["bash", str(base / "scripts/setup.sh"), "apt"]
        if os.geteuid() == 0:
            cmd = [require_tool("setpriv", package="util-linux"), "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env = {**os.environ, "SFR_VENV": sys.prefix}  # a venv exists: python3-venv is not asked for
        run = subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 1, run.stderr
        assert "    apt-get install -y --no-install-recommends sfr-no-such-package sh-is-not-this\n" in run.stderr
        # SFR_SKIP_APT=1 is the way to run without them
        skipped = subprocess.run(cmd, cwd="/", env={**env, "SFR_SKIP_APT": "1"}, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert skipped.returncode == 0, skipped.stderr
    finally:
        shutil.rmtree(base)
