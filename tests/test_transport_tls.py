"""HTTPS: our CA bundle is enforced, wrong certificates are refused, mutual TLS works,
and HTTPS_PROXY from the environment is honoured (CONNECT tunnel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfr_gateway.errors import AuthError, TransportError
from sfr_gateway.transport import TransportSettings
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport.tus import TusDestination

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "connect_timeout": 5, "timeout": 5}

pytest_plugins = ["transport_fixtures"]


def send(url: str, batch, ledger, **kw) -> object:
    slept: list[float] = []
    dest = TusDestination(url, TransportSettings(**{**FAST, **kw}), sleep=slept.append)
    try:
        return dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, url))
    finally:
        dest.close()
        assert slept == [], "TLS and credential failures are never retried"


def test_https_with_our_ca_bundle(new_batch, tmp_path: Path, tus_server, pki, ledger) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key))
    batch = new_batch("B-tls", 300_000)
    receipt = send(server.url, batch, ledger, ca_bundle=pki.ca)
    assert receipt.location.startswith("https://127.0.0.1:")
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]


def test_server_cert_from_another_ca_is_refused(new_batch, tmp_path: Path, tus_server, pki, ledger) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key))
    batch = new_batch("B-otherca", 1000)
    with pytest.raises(TransportError, match="TLS verification failed") as err:
        send(server.url, batch, ledger, ca_bundle=pki.other_ca, retries=5)
    assert not isinstance(err.value, AuthError)
    # and without a bundle the system trust store does not know our test CA either
    with pytest.raises(TransportError, match="TLS verification failed"):
        send(server.url, batch, ledger, retries=5)
    assert server.requests() == []


def test_server_cert_for_another_host_is_refused(new_batch, tmp_path: Path, tus_server, pki, ledger) -> None:
    server = tus_server("--cert", str(pki.wrong_host_cert), "--key", str(pki.wrong_host_key))
    batch = new_batch("B-wronghost", 1000)
    with pytest.raises(TransportError, match="TLS verification failed"):
        send(server.url, batch, ledger, ca_bundle=pki.ca, retries=5)
    assert server.requests() == []


def test_requests_ca_bundle_env_cannot_override_configured_bundle(
    new_batch, tmp_path: Path, tus_server, pki, ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key))
    batch = new_batch("B-env-ca", 1000)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))
    send(server.url, batch, ledger, ca_bundle=pki.ca)  # ours wins: succeeds
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    other = new_batch("B-env-ca2", 1000)
    with pytest.raises(TransportError, match="TLS verification failed"):
        send(server.url, other, ledger, ca_bundle=pki.other_ca)  # and cannot rescue a wrong one


def test_mutual_tls(new_batch, tmp_path: Path, tus_server, pki, ledger) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key), "--ca", str(pki.ca))
    batch = new_batch("B-mtls", 300_000)
    send(server.url, batch, ledger, ca_bundle=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]
    assert {r["client_cn"] for r in server.requests()} == {"site-TEST"}


def test_mutual_tls_without_client_cert_is_refused(new_batch, tmp_path: Path, tus_server, pki, ledger) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key), "--ca", str(pki.ca))
    batch = new_batch("B-nocert", 1000)
    slept: list[float] = []
    dest = TusDestination(server.url, TransportSettings(**{**FAST, "retries": 2}, ca_bundle=pki.ca),
                          sleep=slept.append)
    with pytest.raises(AuthError, match="client certificate"):  # the TLS alert: no retry
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, server.url))
    assert slept == []
    assert server.requests() == [] and server.uploads() == {}


def test_https_proxy_from_environment_is_used(
    new_batch, tus_server, fault_proxy, pki, ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key))
    proxy = fault_proxy(server, connect=True)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url(""))
    batch = new_batch("B-proxy", 200_000)
    send(server.url, batch, ledger, ca_bundle=pki.ca)
    assert proxy.tunnels >= 1
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]


def test_connection_cut_inside_tls_is_retried_and_resumed(new_batch, tus_server, fault_proxy, pki, ledger) -> None:
    # a cut TLS stream is a network failure, not a verification failure: retried, resumed
    server = tus_server("--cert", str(pki.server_cert), "--key", str(pki.server_key), "--checksum")
    proxy = fault_proxy(server)
    proxy.cut_after(500_000)
    url = f"https://127.0.0.1:{proxy.port}/files/"
    batch = new_batch("B-tls-cut", 1_000_000)
    slept: list[float] = []
    dest = TusDestination(url, TransportSettings(**{**FAST, "chunk_size": 128 * 1024}, ca_bundle=pki.ca),
                          sleep=slept.append)
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, url))
    assert proxy.cuts == 1 and len(slept) >= 1
    offsets = server.patch_offsets(batch.path.name)
    assert offsets.count(0) == 1 and receipt.resumed_from == 0  # resumed, never restarted
    assert len(offsets) > len(set(offsets))  # the cut chunk was sent again from its offset
    assert server.upload_of(batch.path.name) == [batch.path.read_bytes()]
    assert len(server.requests("POST")) == 2
