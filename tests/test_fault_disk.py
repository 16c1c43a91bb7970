"""Fault campaign, full disk and I/O errors: a clear error, a non-zero exit, a ledger that a later
run completes; never a truncated batch marked done; originals untouched.

ENOSPC is simulated two ways: ``RLIMIT_FSIZE`` in the child (every write past the limit fails
with EFBIG, wherever it happens: ledger, outbox, drop folder), and, when the tests run as root,
a real 1 MiB tmpfs as the drop folder (ENOSPC from the kernel).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from faults_fixtures import integrity_ok, ledger_rows, snapshot
from pipeline_fixtures import Site, site  # noqa: F401

ELIGIBLE = 84


def _limited(site: Site, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(site.home), *args],
                          capture_output=True, text=True, preexec_fn=preexec, timeout=600)  # noqa: PLW1509


def _done_batches_are_whole(site: Site) -> None:
    """Every batch the ledger calls packaged or acknowledged has its exact recorded bytes."""
    rows = ledger_rows(site.home / "state.db",
                       "SELECT batch_id, state, file_name, sha256, size FROM batches WHERE state IN "
                       "('packaged', 'acknowledged')")
    for batch_id, state, name, sha, size in rows:
        folder = site.home / "outbox" if state == "packaged" else site.dropbox
        path = folder / name
        assert path.exists(), (batch_id, state)
        data = path.read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, (batch_id, state)


def _rerun_delivers_exactly_once(site: Site, tmp_path: Path) -> None:
    final = site.gateway("run", "--json")
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["upload"]["failed"] == {}
    import pydicom

    from sfr_gateway.central import open_batch
    from sfr_gateway.crypto.sign import PublicKey

    key = PublicKey.load(site.home / "keys" / "site-signing.pub")
    uids = Counter()
    for batch in site.batches():
        opened = open_batch(batch, [site.identity], {"TEST01": key}, tmp_path / "opened")
        uids.update(pydicom.dcmread(p).SOPInstanceUID for p in opened.directory.rglob("*.dcm"))
    assert len(uids) == ELIGIBLE and set(uids.values()) == {1}
    assert integrity_ok(site.home / "state.db")


@pytest.mark.parametrize("limit", [48 * 1024, 400 * 1024])
def test_file_size_limit_anywhere_fails_clearly_and_a_rerun_completes(site: Site, cli, tmp_path: Path,
                                                                      limit: int) -> None:
    site.consent_all(cli)
    before = snapshot(site.export.root)
    proc = _limited(site, limit, "run", "--workers", "1")
    assert proc.returncode not in (0, -9), proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip()  # a message
    assert integrity_ok(site.home / "state.db")
    _done_batches_are_whole(site)
    _rerun_delivers_exactly_once(site, tmp_path)
    assert snapshot(site.export.root) == before


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root")
def test_full_drop_folder_fails_clearly_with_no_partial_and_no_false_acknowledgement(site: Site, cli, tmp_path: Path) -> None:
    site.consent_all(cli)
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("tmpfs mount refused here")
    try:
        config = site.home / "config.toml"
        original = config.read_text()
        config.write_text(original.replace('destination = ""', f'destination = "{mnt.as_uri()}"', 1))
        assert mnt.as_uri() in config.read_text()
        proc = site.gateway("run")
        assert "attention: not delivered" in proc.stderr and "No space left" in proc.stderr
        assert not [p for p in mnt.iterdir() if p.name.endswith(".part")]  # no partial left in sight
        acknowledged = ledger_rows(site.home / "state.db", "SELECT batch_id, file_name FROM batches "
                                                             "WHERE state = 'acknowledged'")
        for _, name in acknowledged:  # whatever was acknowledged is whole on the full disk
            assert (mnt / name).stat().st_size > 0
        assert integrity_ok(site.home / "state.db")
        _done_batches_are_whole_on(site, mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _done_batches_are_whole_on(site: Site, folder: Path) -> None:
    rows = ledger_rows(site.home / "state.db",
                       "SELECT file_name, sha256, size FROM batches WHERE state = 'acknowledged'")
    for name, sha, size in rows:
        data = (folder / name).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha


@pytest.mark.skipif(not _can_mount(), reason="a read-only bind mount needs root (chmod does not stop root)")
def test_read_only_home_fails_clearly_and_a_later_run_completes(site: Site, cli, tmp_path: Path) -> None:
    site.consent_all(cli)
    home = str(site.home)
    if subprocess.run(["mount", "--bind", home, home]).returncode != 0:
        pytest.skip("bind mount refused here")
    try:
        assert subprocess.run(["mount", "-o", "remount,bind,ro", home]).returncode == 0
        proc = site.gateway("run")
        assert proc.returncode in (6, 16), proc.stderr
        assert "Traceback" not in proc.stderr
        assert "read-only" in proc.stderr.lower() or "readonly" in proc.stderr.lower()
    finally:
        subprocess.run(["umount", "-l", home])
    assert integrity_ok(site.home / "state.db")
    _rerun_delivers_exactly_once(site, tmp_path)


def test_sources_vanishing_mid_scan_are_recorded_and_the_scan_completes(export_copy: Path, tmp_path: Path) -> None:
    from sfr_gateway.home.config import SelectionRules
    from sfr_gateway.ledger import open_ledger
    from sfr_gateway.scan.walk import scan

    files = sorted(p for p in export_copy.rglob("*") if p.is_file())
    doomed = files[len(files) // 2:]

    def vanish(done: int) -> None:
        if done == 1:
            for p in doomed:
                p.unlink()
            shutil.rmtree(doomed[-1].parent, ignore_errors=True)  # a whole folder too

    with open_ledger(tmp_path / "state.db") as ledger:
        result = scan(ledger, [export_copy], SelectionRules(), progress=vanish, workers=1)
        assert result.complete and result.seen == len(files)
        assert result.unreadable > 0 and set(result.summary["unreadable"]) == {"vanished"}  # chunks already
        # read before the deletion are indexed; every later one is recorded as vanished, none lost
        again = scan(ledger, [export_copy], SelectionRules(), workers=1)
        assert again.complete and again.missing + again.unchanged + again.read >= 1
    assert integrity_ok(tmp_path / "state.db")


def test_a_source_deleted_between_scan_and_release_is_quarantined_not_fatal(site: Site, cli, tmp_path: Path) -> None:
    site.consent_all(cli)
    copy = tmp_path / "export"
    shutil.copytree(site.export.root, copy)
    assert site.gateway("scan", copy).returncode == 0
    victim = sorted(p for p in copy.rglob("*.dcm") if "ser02" in p.name)[0]
    victim.unlink()
    proc = _plain(site, "run", "--json", copy)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["release"]["instances"] == ELIGIBLE - 1
    assert integrity_ok(site.home / "state.db")


def _plain(site: Site, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return site.gateway(*args)
