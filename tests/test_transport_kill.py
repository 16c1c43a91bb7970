"""SIGKILL a real process in the middle of an upload; a new process resumes from the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sfr_gateway.ledger import open_ledger
from sfr_gateway.transport.state import SqliteUploadState

DRIVER = """
import sys
from pathlib import Path
from sfr_gateway.ledger import open_ledger
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport import TransportSettings, destination_for
db, url, path, batch_id, sha256, size, rate = sys.argv[1:]
settings = TransportSettings(chunk_size=64 * 1024, bandwidth_limit=int(rate), retries=2, backoff_base=0.05)
with open_ledger(Path(db)) as ledger, destination_for(url, settings) as dest:
    receipt = dest.send(Path(path), batch_id, sha256, int(size), SqliteUploadState(ledger, url))
print(receipt.to_json())
"""

pytest_plugins = ["transport_fixtures"]


def driver(db: Path, url: str, batch, rate: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(db), url, str(batch.path), batch.batch_id, batch.sha256,
         str(batch.size), str(rate)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # env: no_env_proxy cleaned it
    )


def confirmed_offset(db: Path, url: str, batch_id: str) -> int:
    with open_ledger(db) as led:
        saved = SqliteUploadState(led, url).load(batch_id)
    return saved[1] if saved else 0


def test_sigkill_mid_upload_then_new_process_resumes(new_batch, tmp_path: Path, tus_server) -> None:
    server = tus_server()
    batch = new_batch("B-kill", 3 * 1024 * 1024)
    db = tmp_path / "state.db"
    open_ledger(db).close()  # migrate once, before two processes share it

    victim = driver(db, server.url, batch, rate=512 * 1024)  # ~6 s for the whole batch
    deadline = time.monotonic() + 60
    while confirmed_offset(db, server.url, batch.batch_id) < 256 * 1024:
        assert victim.poll() is None, victim.stderr.read().decode()
        assert time.monotonic() < deadline, "the upload never progressed"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = confirmed_offset(db, server.url, batch.batch_id)
    assert 0 < killed_at < batch.size

    survivor = driver(db, server.url, batch, rate=0)
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err.decode()
    receipt = json.loads(out)
    assert receipt["resumed_from"] >= killed_at > 0
    assert receipt["bytes_sent"] == batch.size - receipt["resumed_from"]
    assert receipt["sha256"] == batch.sha256
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]  # byte-identical, exactly one
    assert len(server.uploads()) == 2 and len(server.requests("POST")) == 2  # data + signature, never re-created
