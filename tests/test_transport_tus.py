"""tus 1.0 client against a real @tus/server on 127.0.0.1, through a fault proxy when needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfr_gateway.errors import AuthError, TransportError
from sfr_gateway.ledger import open_ledger
from sfr_gateway.ledger.uploads import list_uploads
from sfr_gateway.transport import TransportSettings, destination_for
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport.tus import TusDestination

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "connect_timeout": 5, "timeout": 5}

pytest_plugins = ["transport_fixtures"]


def settings(**kw) -> TransportSettings:
    return TransportSettings(**{**FAST, **kw})


def assert_one_copy_on_server(server, batch) -> None:
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]
    assert server.upload_of(batch.signature.name) == [batch.signature.read_bytes()]
    assert len(server.uploads()) == 2


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "checksum"])
def test_happy_path(new_batch, tmp_path: Path, tus_server, ledger, checksum: bool) -> None:
    server = tus_server(*(["--checksum"] if checksum else []))
    batch = new_batch("B-happy", 1_000_003)
    dest = destination_for(server.url, settings(chunk_size=256 * 1024))
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert_one_copy_on_server(server, batch)
    assert receipt.size == batch.size and receipt.sha256 == batch.sha256
    assert receipt.resumed_from == 0 and not receipt.already_complete
    patches = server.requests("PATCH")
    assert len(patches) == 4 + 1  # 4 chunks of data, 1 of signature
    assert all((p["checksum"] or "").startswith("sha256 ") for p in patches) == checksum
    info = next(u["info"] for u in server.uploads().values() if u["info"]["metadata"]["part"] == "data")
    assert info["metadata"]["batch_id"] == "B-happy" and info["metadata"]["sha256"] == batch.sha256
    assert info["metadata"]["filename"] == batch.path.name
    rows = list_uploads(ledger, "B-happy")
    assert {(r["part"], r["state"], r["offset"]) for r in rows} == {
        ("data", "done", batch.size), ("signature", "done", batch.signature.stat().st_size)}


def test_cut_then_new_process_resumes_from_ledger(new_batch, tmp_path: Path, tus_server, fault_proxy) -> None:
    server = tus_server("--checksum")
    proxy = fault_proxy(server)
    batch = new_batch("B-cut", 2 * 1024 * 1024 + 5)
    db = tmp_path / "state.db"
    proxy.cut_after(1_200_000)  # well into the data, mid-chunk
    with open_ledger(db) as led:
        first = TusDestination(proxy.url(), settings(chunk_size=256 * 1024, retries=0))
        with pytest.raises(TransportError, match="next run resumes"):
            first.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(led, proxy.url()))
        first.close()
    assert proxy.cuts == 1
    with open_ledger(db) as led:  # a new process: nothing but the ledger carries over
        url, offset = SqliteUploadState(led, proxy.url()).load(batch.batch_id)
        assert 0 < offset < batch.size
        second = TusDestination(proxy.url(), settings(chunk_size=256 * 1024))
        receipt = second.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(led, proxy.url()))
    assert receipt.resumed_from == offset > 0
    assert receipt.bytes_sent == batch.size - offset
    assert_one_copy_on_server(server, batch)
    assert len(server.requests("POST")) == 2  # signature + data, never re-created
    assert server.requests("HEAD")[0]["url"] == "/files/" + url.rsplit("/", 1)[1]


def test_cut_without_checksum_keeps_partial_bytes(new_batch, tmp_path: Path, tus_server, fault_proxy, ledger) -> None:
    server = tus_server()  # stock server: stores the bytes that arrived before the cut
    proxy = fault_proxy(server)
    batch = new_batch("B-cut2", 1024 * 1024)
    proxy.cut_after(600_000)
    dest = TusDestination(proxy.url(), settings(chunk_size=1024 * 1024, retries=3))
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert proxy.cuts == 1
    assert server.requests("HEAD"), "a retry must ask the server for its offset"
    offsets = server.patch_offsets(batch.path.name)
    assert offsets[0] == 0 and len(offsets) == 2
    assert 0 < offsets[1] < batch.size  # went on from the bytes the server kept, mid-chunk
    assert receipt.resumed_from == 0
    assert receipt.bytes_sent == batch.size + batch.signature.stat().st_size
    assert_one_copy_on_server(server, batch)


def test_5xx_storm_then_success_with_backoff_and_retry_after(new_batch, tmp_path: Path, tus_server, fault_proxy, ledger) -> None:
    server = tus_server()
    proxy = fault_proxy(server)
    batch = new_batch("B-5xx", 300_000)
    proxy.fail_next(3, status=503)
    proxy.fail_next(1, status=502, retry_after=7)
    slept: list[float] = []
    dest = TusDestination(proxy.url(), settings(retries=5, backoff_base=0.5, backoff_max=60),
                          sleep=slept.append, rng=lambda: 1.0)
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert proxy.failed == 4
    assert slept == [0.5, 1.0, 2.0, 7.0]  # exponential, then the server's Retry-After as a floor
    assert receipt.size == batch.size
    assert_one_copy_on_server(server, batch)


def test_5xx_forever_gives_up_with_transport_error(new_batch, tmp_path: Path, tus_server, fault_proxy, ledger) -> None:
    server = tus_server()
    proxy = fault_proxy(server)
    batch = new_batch("B-5xx2", 1000)
    proxy.fail_next(10, status=500)
    slept: list[float] = []
    dest = TusDestination(proxy.url(), settings(retries=3), sleep=slept.append)
    with pytest.raises(TransportError, match="after 4 attempts") as err:
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert not isinstance(err.value, AuthError)
    assert proxy.failed == 4 and len(slept) == 3


def test_stall_is_detected_and_resumed(new_batch, tmp_path: Path, tus_server, fault_proxy, ledger) -> None:
    server = tus_server()
    proxy = fault_proxy(server)
    batch = new_batch("B-stall", 700_000)
    proxy.stall_after(400_000)
    dest = TusDestination(proxy.url(), settings(chunk_size=256 * 1024, timeout=1, retries=3))
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert proxy.stalls == 1
    assert receipt.size == batch.size
    assert_one_copy_on_server(server, batch)


def test_401_is_auth_error_without_retry(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    server = tus_server("--token", "right-token")
    batch = new_batch("B-401", 1000)
    slept: list[float] = []
    dest = TusDestination(server.url, settings(bearer_token="wrong-token", retries=5), sleep=slept.append)
    with pytest.raises(AuthError) as err:
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert "wrong-token" not in str(err.value)
    assert len(server.requests()) == 1 and slept == []
    assert server.uploads() == {}


def test_bearer_token_accepted(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    server = tus_server("--token", "s3cret")
    batch = new_batch("B-tok", 5000)
    dest = TusDestination(server.url, settings(bearer_token="s3cret"))
    dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert_one_copy_on_server(server, batch)


def test_413_is_a_clear_transport_error(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    server = tus_server("--max-size", "100000")
    batch = new_batch("B-413", 200_000)
    dest = TusDestination(server.url, settings(retries=5))
    with pytest.raises(TransportError, match="max_bytes"):
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert server.upload_of(batch.path.name) == []


def test_rerun_after_completion_sends_nothing_and_never_recreates(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    # the server names uploads by file name, as some deployments do: a second creation would
    # silently overwrite the finished upload with an empty one, so the client must never POST again
    server = tus_server("--name-by-metadata", "filename")
    batch = new_batch("B-once", 400_000)
    state = SqliteUploadState(ledger, server.url)
    first = TusDestination(server.url, settings()).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    before = len(server.requests())
    again = TusDestination(server.url, settings()).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    assert again == first and len(server.requests()) == before  # not a single request
    # even when the ledger lost the "done" mark but kept the URL, HEAD finds it complete
    ledger.conn.execute("UPDATE uploads SET state = 'in_progress', receipt = NULL")
    third = TusDestination(server.url, settings()).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    assert third.already_complete and third.bytes_sent == 0
    assert len(server.requests("POST")) == 2 and len(server.creations()) == 2
    assert len(server.requests("PATCH")) == 2
    assert set(server.uploads()) == {batch.path.name, batch.signature.name}
    assert_one_copy_on_server(server, batch)


def test_finished_but_unacknowledged_upload_is_confirmed_by_head(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    # the process died after the last PATCH but before the ledger said "done"
    server = tus_server()
    batch = new_batch("B-head", 300_000)
    state = SqliteUploadState(ledger, server.url)
    TusDestination(server.url, settings()).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    ledger.conn.execute("UPDATE uploads SET state = 'in_progress', receipt = NULL, upload_offset = 0")
    before = len(server.requests())
    receipt = TusDestination(server.url, settings()).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    new = server.requests()[before:]
    assert [r["method"] for r in new] == ["OPTIONS", "HEAD", "HEAD"]
    assert receipt.already_complete and receipt.bytes_sent == 0
    assert_one_copy_on_server(server, batch)


def test_bandwidth_cap_paces_the_body(new_batch, tmp_path: Path, tus_server, ledger) -> None:
    server = tus_server()
    batch = new_batch("B-bw", 1_000_000)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # a virtual clock: the test does not wait
        slept.append(seconds)
        now[0] += seconds

    dest = TusDestination(server.url, settings(bandwidth_limit=100_000), sleep=sleep, clock=lambda: now[0])
    dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    # at 100 kB/s, 1 MB takes about 10 s of (virtual) time, spread over many small waits
    total = batch.size + batch.signature.stat().st_size
    assert sum(slept) == pytest.approx(total / 100_000, rel=0.1)
    assert len(slept) > 10 and max(slept) <= 0.7
    assert_one_copy_on_server(server, batch)


def test_upload_expired_on_server_is_created_anew(new_batch, tmp_path: Path, tus_server, fault_proxy) -> None:
    server = tus_server()
    proxy = fault_proxy(server)
    batch = new_batch("B-gone", 600_000)
    db = tmp_path / "state.db"
    proxy.cut_after(400_000)
    with open_ledger(db) as led:
        with pytest.raises(TransportError):
            TusDestination(proxy.url(), settings(chunk_size=128 * 1024, retries=0)).send(
                batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(led, proxy.url()))
        url, _ = SqliteUploadState(led, proxy.url()).load(batch.batch_id)
    upload_id = url.rsplit("/", 1)[1]
    for leftover in server.store.glob(upload_id + "*"):  # the server expired the unfinished upload
        leftover.unlink()
    with open_ledger(db) as led:
        receipt = TusDestination(proxy.url(), settings(chunk_size=128 * 1024)).send(
            batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(led, proxy.url()))
    assert receipt.resumed_from == 0 and receipt.bytes_sent == batch.size
    assert receipt.location != url
    assert_one_copy_on_server(server, batch)


def test_check_probes_without_sending(tus_server, tmp_path: Path) -> None:
    server = tus_server("--checksum", "--token", "t0k")
    facts = destination_for(server.url, settings(bearer_token="t0k")).check()
    assert facts["kind"] == "tus" and facts["checksum"] == "sha256" and "creation" in facts["extensions"]
    with pytest.raises(AuthError):
        destination_for(server.url, settings(bearer_token="nope")).check()
    assert server.uploads() == {}
    drop = tmp_path / "drop"
    with pytest.raises(TransportError, match="does not exist"):
        destination_for(drop.as_uri()).check()
    drop.mkdir()
    assert destination_for(drop.as_uri()).check()["writable"] is True


def test_long_retry_after_is_left_to_the_next_run(new_batch, tus_server, fault_proxy, ledger) -> None:
    server = tus_server()
    proxy = fault_proxy(server)
    batch = new_batch("B-later", 1000)
    proxy.fail_next(1, status=503, retry_after=600)
    slept: list[float] = []
    dest = TusDestination(proxy.url(), settings(retries=5, backoff_max=60), sleep=slept.append)
    with pytest.raises(TransportError, match="come back in 600 s"):
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert slept == [] and proxy.failed == 1


def test_upload_url_on_another_origin_is_refused(new_batch, tus_server, ledger) -> None:
    # e.g. a tus server behind a TLS proxy that hands out http:// URLs: no downgrade, no token leak
    server = tus_server("--token", "t0k", "--location-base", "http://127.0.0.2:9")
    batch = new_batch("B-origin", 1000)
    dest = TusDestination(server.url, settings(bearer_token="t0k", retries=3))
    with pytest.raises(TransportError, match="another origin"):
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert server.requests("PATCH") == [] and server.requests("HEAD") == []
    assert SqliteUploadState(ledger, server.url).load(batch.batch_id, "signature") is None
