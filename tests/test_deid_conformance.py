"""The acceptance check of issue 15, as a test: ``benchmarks/conformance.py`` on pydicom's test
files, its charset files and pydicom-data's files, with ``basic`` and the default profile: every
input accounted for exactly once, no crash, no new dciodvfy error in any output, every output
checked."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from sfr_gateway.deid.profile import DEFAULT_PROFILE

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "conformance.py"
_spec = importlib.util.spec_from_file_location("conformance", _SCRIPT)
assert _spec is not None and _spec.loader is not None
conformance = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("conformance", conformance)  # its dataclasses look their module up
_spec.loader.exec_module(conformance)


@pytest.mark.tool("dciodvfy", package="dicom3tools")
@pytest.mark.parametrize("profile", ["basic", DEFAULT_PROFILE])
def test_every_input_accounted_once_no_crash_no_new_dciodvfy_error(tmp_path: Path, profile: str) -> None:
    assert len(conformance.inputs()) > 250, "pydicom-data is a test extra: pip install -e '.[test]'"
    report = conformance.check(profile, tmp_path, shutil.which("dciodvfy"))
    assert report.accounted_once and not report.crashed
    # pydicom's 50 TINY_ALPHA CT files are images without Pixel Data: held since issue 21 (an image
    # cut at an element boundary before its pixels looks the same); with them, 60 or more as before
    assert report.quarantined["no-pixel-data"] == 50
    assert report.checked == report.released >= (50 if profile == "basic" else 15)
    assert report.checked + report.quarantined["no-pixel-data"] >= 60
    assert not report.new_errors, report.new_errors
