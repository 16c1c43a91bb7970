"""Fixtures for the cron pipeline: a site enrolled with a central key, consent recorded."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from sfr_gateway.central import open_batch
from sfr_gateway.crypto.age import Identity
from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.sample import SampleExport

TODAY = dt.date(2026, 11, 29)


@dataclass
class Site:
    home: Path
    export: SampleExport
    identity: Identity
    central: Path

    @property
    def dropbox(self) -> Path:
        return self.home / "dropbox"

    def gateway(self, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real command in a new process (what cron does)."""
        return subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(self.home), *map(str, args)],
                              capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)

    def consent_all(self, cli, status: str = "consented") -> None:
        for patient in self.export.patients:
            result = cli("--home", self.home, "consent", "set", patient.patient_id, status,
                         "--issuer", patient.issuer, "--date", "2026-01-15", "--source", "form")
            assert result.exit_code == 0, result.stderr

    def batches(self) -> list[Path]:
        return sorted(self.dropbox.glob("*.tar.zst.age")) if self.dropbox.exists() else []

    def open_all(self) -> list[pydicom.Dataset]:
        """Open every delivered batch as the central host would; return the datasets."""
        out = self.central / "opened"
        datasets = []
        for batch in self.batches():
            opened = open_batch(batch, [self.identity], {"TEST01": PublicKey.load(self.home / "keys" / "site-signing.pub")},
                                out)
            for path in sorted(opened.directory.rglob("*.dcm")):
                datasets.append(pydicom.dcmread(path))
        return datasets


@pytest.fixture
def site(tmp_path: Path, sample_export: SampleExport, cli) -> Site:
    identity = Identity.generate()
    home = tmp_path / "home"
    result = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
                 "--export", sample_export.root)
    assert result.exit_code == 0, result.stderr
    return Site(home, sample_export, identity, tmp_path / "central")
