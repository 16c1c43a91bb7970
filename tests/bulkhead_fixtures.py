"""Fixtures of the bulkhead tests: small sites over exports that a test may spoil (shared UIDs,
engine faults), each run in a new process as cron runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
from pipeline_fixtures import Site

from sfr_gateway.crypto.age import Identity
from sfr_gateway.errors import HeldBackError
from sfr_gateway.sample import SampleExport, generate_export


def make_site(tmp_path: Path, cli, *, patients: int, slices: int, seed: int) -> Site:
    """An initialised HOME over a new export of ``patients`` × one chest study of ``slices``
    files (every file eligible), every patient consented."""
    export = generate_export(tmp_path / "export", patients=patients, seed=seed, slices=slices, extras=False)
    identity = Identity.generate()
    home = tmp_path / "home"
    result = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
                 "--export", export.root)
    assert result.exit_code == 0, result.stderr
    site = Site(home, export, identity, tmp_path / "central")
    site.consent_all(cli)
    return site


def spoil_twelve(export: SampleExport) -> tuple[Path, Path, Path]:
    """Two patients × 5 files, plus patient 1's extra image carrying the SOP Instance UID of
    patient 0's first one (a broken UID generator) and a byte-identical re-export of patient 0's
    second one: 12 files. Returns (conflicting file, the file it conflicts with, the copy)."""
    p0 = sorted(f for f in export.files if "P0000" in str(f))
    p1 = sorted(f for f in export.files if "P0001" in str(f))
    ds = pydicom.dcmread(p1[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.dcmread(p0[0]).SOPInstanceUID
    ds.InstanceNumber = 99
    conflict = p1[0].parent / "ser02_0099.dcm"
    ds.save_as(conflict, enforce_file_format=True)
    (export.root / "reexport").mkdir()
    copy = export.root / "reexport" / "copy.dcm"
    shutil.copy2(p0[1], copy)
    return conflict, p0[0], copy


def run_report(site: Site, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = site.gateway("run", "--json", *args, env=env)
    assert proc.returncode in (0, HeldBackError.exit_code), proc.stderr
    return proc, json.loads(proc.stdout)


def delivered(site: Site, into: Path) -> list[pydicom.Dataset]:
    """Every instance of every batch in the drop folder, opened as the central host does."""
    from sfr_gateway.central import open_batch
    from sfr_gateway.crypto.sign import PublicKey

    key = PublicKey.load(site.home / "keys" / "site-signing.pub")
    out = []
    for batch in site.batches():
        opened = open_batch(batch, [site.identity], {"TEST01": key}, into)
        out += [pydicom.dcmread(p) for p in sorted(opened.directory.rglob("*.dcm"))]
    return out


def quarantine_list(site: Site) -> dict:
    proc = site.gateway("quarantine", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
