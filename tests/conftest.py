"""Shared fixtures: an isolated environment, initialised HOMEs, generated exports, a CLI runner."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from tool_fixtures import pytest_configure, pytest_runtest_setup, pytest_terminal_summary  # noqa: F401  (hooks)

from sfr_gateway.cli import main
from sfr_gateway.sample import SampleExport, generate_export


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's gateway HOME or writes outside its tmp_path."""
    monkeypatch.delenv("SFR_GATEWAY_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, input: str | None = None) -> CliResult:
    """Run ``sfr-gateway ARGS`` in process, through the same entry point as the console script."""
    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace"))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An initialised gateway HOME for site TEST01."""
    path = tmp_path / "home"
    result = run_cli("--home", path, "init", "--site-id", "TEST01")
    assert result.exit_code == 0, result.stderr
    return path


@pytest.fixture(scope="session")
def sample_export(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    """A small synthetic export shared by the session: treat it as read-only."""
    return generate_export(tmp_path_factory.mktemp("export"), patients=5, seed=7)


@pytest.fixture
def export_copy(sample_export: SampleExport, tmp_path: Path) -> Path:
    """A private copy of the sample export that a test may change."""
    dest = tmp_path / "export"
    shutil.copytree(sample_export.root, dest)
    return dest
