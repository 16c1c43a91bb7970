"""External tools the tests use, and the one policy for when one is missing.

The tools are Debian packages listed in ``.ci/apt-packages.txt`` (age, minisign, zstd, dicom3tools,
chromium, nodejs, ...) and the npm test servers in ``tests/*/``: ``scripts/test.sh`` installs them
(``scripts/setup.sh``). A test asks for one with ``require_tool("age")`` (returns its path) or the
marker ``@pytest.mark.tool("dciodvfy", package="dicom3tools")``. When the tool is missing the test is
skipped with the reason, the run's summary counts those skips and names the tools; under ``CI=true``
the test fails instead, so a green CI run proves that nothing was skipped.

tests/conftest.py imports the hooks below, so the marker and the summary work in every test module.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

MISSING = "missing tool:"
# The Debian package of a command, where the names differ (default: the same name).
PACKAGES = {"age-keygen": "age", "dciodvfy": "dicom3tools", "node": "nodejs", "chromium-browser": "chromium"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str) -> NoReturn:
    """Skip the current test because ``what`` is not installed (fail under CI=true)."""
    message = f"{MISSING} {what}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: CI must run every test; scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(message)


def require_tool(*names: str, package: str | None = None, path: str | None = None) -> str:
    """Path of the first of ``names`` on PATH (or ``path``); otherwise skip (fail under CI=true) naming its package."""
    for name in names:
        found = shutil.which(name, path=path)
        if found is not None:
            return found
    package = package or PACKAGES.get(names[0], names[0])
    missing(f"{names[0]} (Debian package {package}, listed in .ci/apt-packages.txt: "
            "./scripts/test.sh installs it when run as root)")


# -- hooks (imported by tests/conftest.py) ----------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tool(*names, package=None): the test runs an external tool (see tests/tool_fixtures.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("tool"):
        require_tool(*marker.args, **marker.kwargs)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """One visible line when tests were skipped for missing tools: how many, which, how to fix."""
    reasons = [_skip_reason(r) for r in terminalreporter.stats.get("skipped", [])]
    tools = sorted({r.split(MISSING, 1)[1].split()[0] for r in reasons if MISSING in r})
    count = sum(MISSING in r for r in reasons)
    if count:
        terminalreporter.write_sep("=", f"{count} skipped: missing tools: {', '.join(tools)}", yellow=True)
        terminalreporter.write_line("Run ./scripts/test.sh as root to install them (CI=true turns these skips into failures).")
