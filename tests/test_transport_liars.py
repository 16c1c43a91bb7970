"""The tus client against servers that stall, lie about completion, or go backwards (issue 19).

Each misbehaviour is a real HTTP server on 127.0.0.1 (tests/tus_liars.py); the client is the
real one. The honest mode of the same server is the control: the checks do not refuse a server
that tells the truth.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import requests

from sfr_gateway.batch.names import batch_path
from sfr_gateway.consent import registry as consent
from sfr_gateway.errors import ConfigError, TransportError
from sfr_gateway.home.config import load_config
from sfr_gateway.ledger import batches as sql
from sfr_gateway.ledger import open_ledger
from sfr_gateway.run.upload import upload
from sfr_gateway.transport import TransportSettings
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport.tus import TusDestination

pytest_plugins = ["transport_fixtures", "tus_liars"]

FAST = {"backoff_base": 0.0, "backoff_max": 0.0, "connect_timeout": 5, "timeout": 5}


def send(server, batch, ledger, **kw):
    dest = TusDestination(server.url, TransportSettings(**{**FAST, **kw}), sleep=lambda _: None)
    try:
        return dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    finally:
        dest.close()


def test_honest_server_is_the_control(new_batch, ledger, liar_tus) -> None:
    server = liar_tus("honest")
    batch = new_batch("B-honest", 300_000)
    receipt = send(server, batch, ledger, chunk_size=64 * 1024)
    assert receipt.size == batch.size and not receipt.already_complete
    assert batch.path.read_bytes() in server.stored()


def test_a_server_that_never_advances_the_offset_exhausts_the_retry_budget(new_batch, ledger, liar_tus) -> None:
    # before: each PATCH answered with the same offset reset the retry count: > 2,000 PATCHes, forever
    server = liar_tus("stuck")
    batch = new_batch("B-stuck", 200_000)
    with pytest.raises(TransportError, match="did not advance"):
        send(server, batch, ledger, retries=3, chunk_size=64 * 1024)
    assert server.count("PATCH") == 4  # the first try and 3 retries, then the run goes on


def _created_then_killed(server, batch, ledger) -> None:
    """The ledger as a process leaves it when killed right after creating both uploads."""
    state = SqliteUploadState(ledger, server.url)
    for part in ("signature", "data"):
        size = batch.signature.stat().st_size if part == "signature" else batch.size
        resp = requests.post(server.url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size)}, timeout=5)
        state.save(batch.batch_id, server.url + resp.headers["Location"].rsplit("/", 1)[1], 0, part)


def test_completion_claimed_by_head_alone_is_not_delivery(new_batch, ledger, liar_tus) -> None:
    # before: HEAD answering Upload-Offset == Upload-Length gave 0 PATCHes and "already complete"
    server = liar_tus("claims-complete")
    batch = new_batch("B-liar", 100_000)
    _created_then_killed(server, batch, ledger)
    with pytest.raises(TransportError, match="claims the upload is complete .* sent only 0"):
        send(server, batch, ledger)
    assert server.count("PATCH") == 0
    state = SqliteUploadState(ledger, server.url)
    assert state.receipt(batch.batch_id) is None and state.receipt(batch.batch_id, "signature") is None


def test_completion_after_our_final_patch_is_confirmed_by_head(new_batch, tmp_path: Path, liar_tus) -> None:
    """A process killed after its last PATCH: the next one's HEAD is the confirmation (control)."""
    server = liar_tus("honest")
    batch = new_batch("B-killed", 100_000)
    with open_ledger(tmp_path / "state.db") as led:
        send(server, batch, led)
        led.conn.execute("UPDATE uploads SET state = 'in_progress', receipt = NULL, upload_offset = 0")
    with open_ledger(tmp_path / "state.db") as led:
        receipt = send(server, batch, led)
    assert receipt.already_complete and receipt.bytes_sent == 0


def test_a_server_that_goes_backwards_is_refused(new_batch, ledger, liar_tus) -> None:
    server = liar_tus("backwards")
    batch = new_batch("B-back", 300_000)
    with pytest.raises(TransportError, match="went backwards|lost bytes it had acknowledged"):
        send(server, batch, ledger, chunk_size=64 * 1024, retries=5)
    assert server.count("PATCH") <= 3


def test_a_head_offset_beyond_what_was_sent_is_refused(new_batch, ledger, liar_tus) -> None:
    server = liar_tus("beyond")
    batch = new_batch("B-beyond", 100_000)
    _created_then_killed(server, batch, ledger)
    with pytest.raises(TransportError, match="claims 1 bytes but this gateway has sent only 0"):
        send(server, batch, ledger)
    assert server.count("PATCH") == 0


@pytest.mark.parametrize("lost", [False, True], ids=["control", "server-lost-confirmed-bytes"])
def test_a_head_offset_below_what_the_server_confirmed_is_refused(new_batch, ledger, liar_tus, lost: bool) -> None:
    """A process confirmed 64 KiB, was killed, and the server's storage then lost them (a restart
    on storage that did not survive). Before: the next process restarted from the server's lower
    offset as if nothing had happened, so bytes the server had acknowledged vanished in silence."""
    server = liar_tus("honest")
    batch = new_batch("B-lost", 200_000)
    _created_then_killed(server, batch, ledger)
    state = SqliteUploadState(ledger, server.url)
    url = state.load(batch.batch_id)[0]  # type: ignore[index]
    chunk = batch.path.read_bytes()[:65536]
    state.note_sent(batch.batch_id, len(chunk))  # as the client does before the bytes leave
    resp = requests.patch(url, data=chunk, timeout=5, headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert resp.headers["Upload-Offset"] == str(len(chunk))
    state.save(batch.batch_id, url, len(chunk))  # the confirmed offset, then the kill
    if not lost:
        assert send(server, batch, ledger).resumed_from == len(chunk)  # resumes where it stopped
        assert batch.path.read_bytes() in server.stored()
        return
    server.lose_everything()
    with pytest.raises(TransportError, match="holds 0 bytes of this upload after confirming 65536: it lost bytes"):
        send(server, batch, ledger)
    assert server.count("PATCH") == 2  # ours above and the signature's: the data is not sent again
    assert state.receipt(batch.batch_id) is None


def test_upload_against_a_stuck_server_ends_with_exit_10(home: Path, new_batch, liar_tus, cli) -> None:
    """The review's finding end to end: before, `upload` (and `run`, holding the HOME lock) sent
    PATCH after PATCH to a server that never advances, forever."""
    server = liar_tus("stuck")
    path, content = _packaged(home, new_batch, server.url)
    config_file = home / "config.toml"
    config_file.write_text(config_file.read_text().replace(
        "[transport]\n", "[transport]\nretries = 2\nbackoff_seconds = 0\nbackoff_max_seconds = 0\n", 1))
    result = cli("--home", home, "upload")
    assert result.exit_code == TransportError.exit_code == 10, result.stderr
    assert "did not advance" in result.stderr or "not delivered" in result.stderr
    assert server.count("PATCH") == 3  # the signature part: the first try and 2 retries, then the run ends
    assert path.read_bytes() == content
    with open_ledger(load_config(home).home.state_db) as led:
        assert sql.batch_state(led, "B-0001") == "failed"


def _packaged(home: Path, new_batch, url: str, extra: str = "") -> tuple[Path, bytes]:
    """HOME with destination ``url`` and one packaged batch B-0001 (of consented patient P) in its
    outbox and ledger."""
    config_file = home / "config.toml"
    text = config_file.read_text().replace('destination = ""', f'destination = "{url}"', 1)
    config_file.write_text(text.replace("[batch]\n", "[batch]\n" + extra, 1))
    config = load_config(home)
    made = new_batch("B-0001", 40_000)
    content = made.path.read_bytes()
    path = batch_path(config.home.outbox, "B-0001")
    made.path.rename(path)
    made.signature.rename(path.with_name(path.name + ".minisig"))
    with open_ledger(config.home.state_db) as led, led.transaction() as conn:
        sql.begin_batch(conn, batch_id="B-0001", study_uid="1.2.3", patient_id="P", issuer="", pseudonym="TEST01-X",
                        new_study_uid="2.25.1", part=1, consent_status="consented", consent_date="2026-01-01")
        sql.finish_batch(conn, "B-0001", file_name=path.name, sha256=made.sha256, size=made.size, files=1,
                         plaintext_bytes=made.size, released=[], study_uid="1.2.3", quarantined=[])
    with open_ledger(config.home.state_db) as led:
        consent.set_status(led, "P", "consented", today=dt.date.today())  # upload sends only releasable batches
    return path, content


def test_upload_keeps_the_local_batch_when_the_server_only_claims_completion(home: Path, new_batch, liar_tus) -> None:
    # before: "already complete", the batch acknowledged and its only copy deleted (keep_sent is off)
    server = liar_tus("claims-complete")
    path, content = _packaged(home, new_batch, server.url)
    config = load_config(home)
    with open_ledger(config.home.state_db) as led:
        batch = type(new_batch("B-other", 1))(path, "B-0001", hashlib.sha256(content).hexdigest(), len(content))
        _created_then_killed(server, batch, led)
        report = upload(led, config)
        assert report.acknowledged == [] and "B-0001" in report.failed
        assert sql.batch_state(led, "B-0001") == "failed"
    assert path.read_bytes() == content and path.with_name(path.name + ".minisig").exists()


@pytest.mark.parametrize("keep", [False, True], ids=["removed-after-delivery", "keep_sent"])
def test_a_confirmed_delivery_removes_the_local_batch_unless_keep_sent(home: Path, new_batch, liar_tus,
                                                                      keep: bool) -> None:
    server = liar_tus("honest")
    path, content = _packaged(home, new_batch, server.url, "keep_sent = true\n" if keep else "")
    config = load_config(home)
    assert config.keep_sent is keep
    with open_ledger(config.home.state_db) as led:
        assert upload(led, config).acknowledged == ["B-0001"]
    assert content in server.stored()
    assert path.exists() is keep


def test_keep_sent_must_be_a_boolean(home: Path) -> None:
    config_file = home / "config.toml"
    config_file.write_text(config_file.read_text().replace("[batch]\n", '[batch]\nkeep_sent = "no"\n', 1))
    with pytest.raises(ConfigError, match="batch.keep_sent must be true or false"):
        load_config(home)
