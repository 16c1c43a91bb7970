"""Fixtures for day-to-day operation tests (issue 17): a site on a private, changeable export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pipeline_fixtures import Site

from sfr_gateway.crypto.age import Identity
from sfr_gateway.sample import SampleExport

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")  # before a line not on a terminal


@pytest.fixture
def own_site(tmp_path: Path, sample_export: SampleExport, cli) -> Site:
    """A site whose export is a private copy of the sample (a test may add, break or remove files)."""
    root = tmp_path / "export"
    shutil.copytree(sample_export.root, root)
    export = SampleExport(root=root, files=[root / p.relative_to(sample_export.root) for p in sample_export.files],
                          patients=sample_export.patients)
    identity = Identity.generate()
    home = tmp_path / "home"
    result = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
                 "--export", root)
    assert result.exit_code == 0, result.stderr
    return Site(home, export, identity, tmp_path / "central")
