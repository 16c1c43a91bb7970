"""Static checks are part of the test command: ruff (with the bandit rules S) and mypy.

Configuration (and why each ignore exists): ``[tool.ruff]`` and ``[tool.mypy]`` in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tool_fixtures import missing

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None and not (Path(sys.executable).parent / name).exists():
        missing(f"{name} (a test extra: scripts/test.sh installs it, or pip install -e '.[test]')")
    return [sys.executable, "-m", name]


def test_ruff_reports_nothing() -> None:
    proc = subprocess.run([*_tool("ruff"), "check", "--no-cache", "sfr_gateway", "tests", "benchmarks",
                           "tools"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_reports_nothing_on_the_package() -> None:
    proc = subprocess.run([*_tool("mypy"), "--no-incremental", "sfr_gateway"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
