"""A real batch (packaging: tar+zstd+age, minisign) crosses a cut link to a real tus server,
and what the server stored opens with the central host's tool."""

from __future__ import annotations

import os
from pathlib import Path

from sfr_gateway.batch import write as package
from sfr_gateway.central import open_batch, parse_public_key
from sfr_gateway.crypto import age, sign
from sfr_gateway.transport import TransportSettings
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport.tus import TusDestination

pytest_plugins = ["transport_fixtures"]


def test_real_batch_over_cut_link_opens_at_the_centre(tmp_path: Path, tus_server, fault_proxy, ledger) -> None:
    central = age.Identity.generate()
    site_key = sign.generate_signing_key()
    members = [(f"1.2.3/series/{i:04d}.dcm", os.urandom(50_000) + bytes(150_000)) for i in range(6)]
    info = package.BatchInfo(site="CHU-TEST", batch_id="b-e2e", profile="sfr-covid")
    batch = package.write_batch(tmp_path / "outbox", info, iter(members), [central.recipient], site_key)

    server = tus_server("--checksum")
    proxy = fault_proxy(server)
    proxy.cut_after(batch.size // 2)
    dest = TusDestination(proxy.url(), TransportSettings(chunk_size=64 * 1024, backoff_base=0.01, timeout=5),
                          sleep=lambda _: None)
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, proxy.url()))
    assert proxy.cuts == 1 and receipt.sha256 == batch.sha256

    received = tmp_path / "received"  # what the centre's hook would do: name files by metadata
    received.mkdir()
    for upload in server.uploads().values():
        (received / upload["info"]["metadata"]["filename"]).write_bytes(upload["data"])
    pub = tmp_path / "site.pub"
    pub.write_text(site_key.minisign_public())
    opened = open_batch(received / batch.path.name, [central], {"CHU-TEST": parse_public_key(str(pub))},
                        tmp_path / "unpacked")
    assert opened.batch_id == "b-e2e" and opened.sha256 == batch.sha256 and opened.files == len(members)
    for name, data in members:
        assert (opened.directory / name).read_bytes() == data
