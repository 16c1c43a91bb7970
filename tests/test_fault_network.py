"""Fault campaign, hostile network, end to end: ``sfr-gateway run`` against a real tus server.

SIGKILL of the cron run in the middle of an upload, then a new run resumes (offset > 0) and the
server holds each batch once, byte-identical; refused credentials stop the run with exit 11 and
a message naming them; a certificate from another CA is refused (never a fallback).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from faults_fixtures import integrity_ok, ledger_rows, snapshot

from sfr_gateway.crypto.age import Identity
from sfr_gateway.errors import AuthError, TransportError

pytest_plugins = ["transport_fixtures"]


def _site(tmp_path: Path, cli, export, url: str, transport: str, *, keep_sent: bool = True) -> Path:
    home = tmp_path / "home"
    identity = Identity.generate()
    result = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
                 "--export", export.root, "--destination", url)
    assert result.exit_code == 0, result.stderr
    config = home / "config.toml"
    text = config.read_text()
    text = text.replace("[transport]\n", "[transport]\n" + transport + "\n", 1)
    if keep_sent:
        text = text.replace("[batch]\n", "[batch]\nkeep_sent = true\n", 1)
    config.write_text(text)
    for p in export.patients:
        assert cli("--home", home, "consent", "set", p.patient_id, "consented", "--issuer", p.issuer,
                   "--date", "2026-01-15").exit_code == 0
    return home


def _gateway(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sfr_gateway", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _max_offset(db: Path) -> int:
    try:
        rows = ledger_rows(db, "SELECT max(upload_offset) FROM uploads WHERE part = 'data' AND state = 'in_progress'")
    except Exception:  # noqa: BLE001 - the ledger is being created by the run
        return 0
    return rows[0][0] or 0


def test_sigkill_of_run_mid_upload_then_rerun_resumes_and_delivers_each_batch_once(
        tmp_path: Path, cli, sample_export, tus_server) -> None:
    server = tus_server("--checksum")
    before = snapshot(sample_export.root)
    home = _site(tmp_path, cli, sample_export, server.url,
                 "bandwidth_limit_bytes_per_second = 8000\nchunk_bytes = 4096")
    victim = _gateway(home, "run", "--workers", "1")
    deadline = time.monotonic() + 120
    while _max_offset(home / "state.db") == 0:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "no upload ever progressed"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    killed_at = _max_offset(home / "state.db")
    assert killed_at > 0
    assert integrity_ok(home / "state.db")

    config = home / "config.toml"
    config.write_text(config.read_text().replace("bandwidth_limit_bytes_per_second = 8000", ""))
    rerun = _gateway(home, "run", "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert json.loads(out)["upload"]["failed"] == {}

    batches = sorted((home / "outbox").glob("*.tar.zst.age"))
    assert len(batches) == 7
    for batch in batches:  # each batch on the server exactly once, byte-identical
        assert server.upload_of(batch.name) == [batch.read_bytes()]
        sig = batch.with_name(batch.name + ".minisig")
        assert server.upload_of(sig.name) == [sig.read_bytes()]
    assert len(server.uploads()) == len(server.requests("POST")) == 14  # never re-created (stock @tus/server
    # overwrites a finished upload that is created again): one creation per batch file
    resumed = [o for b in batches for o in server.patch_offsets(b.name)[1:]]
    assert any(o >= killed_at > 0 for o in resumed)  # the new run went on from the killed one's offset
    states = Counter(s for (s,) in ledger_rows(home / "state.db", "SELECT state FROM batches"))
    assert set(states) == {"acknowledged"}
    assert integrity_ok(home / "state.db")
    assert snapshot(sample_export.root) == before


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_refused_credentials_stop_the_run_with_exit_11_naming_them(
        tmp_path: Path, cli, sample_export, tus_server, token: str | None) -> None:
    server = tus_server("--token", "the-right-one")
    transport = ""
    if token is not None:
        (tmp_path / "token").write_text(token)
        (tmp_path / "token").chmod(0o600)
        transport = f'bearer_token_file = "{tmp_path / "token"}"'
    home = _site(tmp_path, cli, sample_export, server.url, transport)
    proc = _gateway(home, "run")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == AuthError.exit_code == 11, err
    assert "credential" in err.lower()
    assert "the-right-one" not in out + err and "wrong-token" not in out + err
    assert server.uploads() == {}
    pending = ledger_rows(home / "state.db", "SELECT count(*) FROM batches WHERE state IN ('packaged', 'failed')")
    assert pending[0][0] >= 1  # kept for the run after the credentials are fixed
    assert integrity_ok(home / "state.db")


def test_certificate_from_another_ca_is_refused_and_nothing_is_sent(
        tmp_path: Path, cli, sample_export, tus_server, pki) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key))
    home = _site(tmp_path, cli, sample_export, server.url,
                 f'ca_bundle = "{pki.other_ca}"\nretries = 1\nbackoff_seconds = 0')
    proc = _gateway(home, "run")
    out, err = proc.communicate(timeout=300)
    # a transport failure leaves the batches pending for the next run: the run says so on stderr
    # (cron mails it), in its report and with exit code 10; it never retries without verification
    assert proc.returncode == TransportError.exit_code == 10, err
    assert "attention: not delivered" in err and "TLS verification failed" in err
    assert server.requests() == [] and server.uploads() == {}
    acknowledged = ledger_rows(home / "state.db", "SELECT count(*) FROM batches WHERE state = 'acknowledged'")
    assert acknowledged == [(0,)]
