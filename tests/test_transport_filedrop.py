"""file:///dir destination: atomic placement, signature first, idempotence, refusals."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sfr_gateway.errors import ConfigError, IntegrityError, TransportError
from sfr_gateway.ledger.uploads import list_uploads
from sfr_gateway.transport import destination_for
from sfr_gateway.transport.filedrop import FileDropDestination
from sfr_gateway.transport.state import SqliteUploadState

pytest_plugins = ["transport_fixtures"]


@pytest.fixture
def other_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drop folder on another filesystem than the outbox (a share): no hard links there."""

    def cross_device(src: object, dst: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(dst))

    monkeypatch.setattr(os, "link", cross_device)


def test_same_filesystem_drop_is_a_hard_link_to_the_fsynced_batch(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0010", 2 * 1024 * 1024 + 5)
    drop = tmp_path / "drop"
    drop.mkdir()
    receipt = FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                             SqliteUploadState(ledger, drop.as_uri()))
    placed = drop / batch.path.name
    assert placed.stat().st_ino == batch.path.stat().st_ino  # no second copy of the bytes
    assert placed.read_bytes() == batch.path.read_bytes()
    assert receipt.sha256 == batch.sha256 and not list(drop.glob("*.part"))


def test_drop_on_another_filesystem_is_copied_in_blocks(new_batch, tmp_path: Path, ledger,
                                                        other_filesystem: None) -> None:
    batch = new_batch("B-0011", 3 * 1024 * 1024 + 9)
    drop = tmp_path / "drop"
    drop.mkdir()
    seen: list[int] = []
    FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                   SqliteUploadState(ledger, drop.as_uri()), progress=lambda d, t: seen.append(d))
    placed = drop / batch.path.name
    assert placed.stat().st_ino != batch.path.stat().st_ino
    assert placed.read_bytes() == batch.path.read_bytes()
    assert len(seen) >= 4 and seen[-1] == batch.size


def test_drop_places_batch_and_signature_without_visible_partial(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0001", 3 * 1024 * 1024 + 17)
    drop = tmp_path / "drop"
    drop.mkdir()
    dest = destination_for(drop.as_uri())
    assert isinstance(dest, FileDropDestination)
    final = drop / batch.path.name
    seen: list[tuple[int, bool, bool]] = []

    def progress(done: int, total: int) -> None:
        # while bytes are being copied, the final name never exists; the signature already does
        seen.append((done, final.exists(), (drop / batch.signature.name).exists()))

    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size,
                        SqliteUploadState(ledger, dest.url), progress=progress)
    assert seen and seen[-1][0] == batch.size
    assert not any(visible for _, visible, _ in seen)
    assert all(sig for _, _, sig in seen)
    assert final.read_bytes() == batch.path.read_bytes()
    assert (drop / batch.signature.name).read_bytes() == batch.signature.read_bytes()
    assert sorted(p.name for p in drop.iterdir()) == sorted([batch.path.name, batch.signature.name])
    assert receipt.sha256 == batch.sha256 and receipt.size == batch.size
    assert receipt.bytes_sent == batch.size + batch.signature.stat().st_size
    assert {(r["part"], r["state"]) for r in list_uploads(ledger)} == {("data", "done"), ("signature", "done")}


def test_drop_crash_mid_copy_leaves_no_final_file_and_retry_completes(new_batch, tmp_path: Path, ledger,
                                                                      other_filesystem: None) -> None:
    batch = new_batch("B-0002", 5 * 1024 * 1024)
    drop = tmp_path / "drop"
    drop.mkdir()
    dest = FileDropDestination(drop)
    state = SqliteUploadState(ledger, dest.url)

    class Crash(Exception):
        pass

    def die_halfway(done: int, total: int) -> None:
        if done > total // 2:
            raise Crash

    with pytest.raises(Crash):
        dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, state, progress=die_halfway)
    assert not (drop / batch.path.name).exists()
    assert not list(drop.glob("*.part"))
    assert state.receipt(batch.batch_id) is None
    receipt = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    assert (drop / batch.path.name).read_bytes() == batch.path.read_bytes()
    assert receipt.bytes_sent == batch.size  # the signature was already there: not copied again


def test_drop_is_idempotent(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0003", 100_000)
    drop = tmp_path / "drop"
    drop.mkdir()
    dest = FileDropDestination(drop)
    first = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, dest.url))
    mtime = (drop / batch.path.name).stat().st_mtime_ns
    # the ledger knows: nothing is even read
    again = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(ledger, dest.url))
    assert again == first
    # a fresh ledger (lost state.db): the same bytes already in the folder are not copied again
    from sfr_gateway.ledger import open_ledger

    with open_ledger(tmp_path / "other.db") as other:
        third = dest.send(batch.path, batch.batch_id, batch.sha256, batch.size, SqliteUploadState(other, dest.url))
    assert third.bytes_sent == 0 and third.already_complete
    assert (drop / batch.path.name).stat().st_mtime_ns == mtime


def test_drop_refuses_to_overwrite_a_different_file(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0004", 10_000)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / batch.path.name).write_bytes(b"someone else's bytes")
    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                       SqliteUploadState(ledger, drop.as_uri()))
    assert (drop / batch.path.name).read_bytes() == b"someone else's bytes"


def test_drop_refuses_tampered_unsigned_or_missing_folder(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0005", 10_000)
    drop = tmp_path / "drop"
    state = SqliteUploadState(ledger, drop.as_uri())
    with pytest.raises(TransportError, match="does not exist"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    drop.mkdir()
    with pytest.raises(IntegrityError, match="SHA-256"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, "0" * 64, batch.size, state)
    batch.signature.unlink()
    with pytest.raises(IntegrityError, match="signature"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size, state)
    assert list(drop.iterdir()) == []


@pytest.mark.parametrize("url", ["ftp://host/x", "http://central.example.org/files/", "file://server/share"])
def test_destination_for_refuses_unsafe_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        destination_for(url)


def test_a_batch_written_by_this_process_is_not_hashed_again_unless_touched(tmp_path: Path, ledger,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """write_batch notes the SHA-256 it computed; the upload's integrity check trusts it only for
    the very same, untouched file (a rewrite in place, even with its mtime put back, is caught)."""
    from sfr_gateway.batch import write as package
    from sfr_gateway.crypto import age, sign
    from sfr_gateway.transport import base

    central = age.Identity.generate()
    result = package.write_batch(tmp_path / "outbox", package.BatchInfo("S", "b1", "p"), [("a.dcm", b"x" * 5000)],
                                 [central.recipient], sign.generate_signing_key())
    read = []
    real = base.file_sha256
    monkeypatch.setattr(base, "file_sha256", lambda path, *a: read.append(path) or real(path, *a))
    base.check_batch(result.path, result.sha256, result.size)
    assert read == []  # known from the write
    st = result.path.stat()
    data = bytearray(result.path.read_bytes())
    data[-1] ^= 1
    result.path.write_bytes(bytes(data))
    os.utime(result.path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: ctime still moved
    with pytest.raises(IntegrityError):
        base.check_batch(result.path, result.sha256, result.size)
    assert read == [result.path]


def test_a_symlink_planted_at_the_part_name_is_never_written_through(new_batch, tmp_path: Path, ledger,
                                                                     other_filesystem: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An attacker with write access to the share wins the race between the removal of a stale
    ``.part`` and its creation (before: ``open(part, "wb")`` followed the link and truncated the victim)."""
    batch = new_batch("B-0020", 200_000)
    drop = tmp_path / "drop"
    drop.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    part = drop / (batch.signature.name + ".part")
    real_unlink = os.unlink

    def unlink_then_attacker_plants(path: object, *args: object, **kwargs: object) -> None:
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]
        if Path(str(path)) == part and not os.path.lexists(part):
            os.symlink(victim, part)

    part.write_bytes(b"stale")  # left by an interrupted attempt
    monkeypatch.setattr(os, "unlink", unlink_then_attacker_plants)
    with pytest.raises(TransportError, match="appeared while we wrote it"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                       SqliteUploadState(ledger, drop.as_uri()))
    monkeypatch.undo()
    assert victim.read_bytes() == b"precious"
    assert not os.path.lexists(drop / batch.signature.name) and not os.path.lexists(drop / batch.path.name)


@pytest.mark.parametrize("share", [False, True], ids=["same-filesystem", "share-without-links"])
def test_a_file_appearing_under_the_final_name_meanwhile_is_never_replaced(new_batch, tmp_path: Path, ledger,
                                                                           request: pytest.FixtureRequest,
                                                                           share: bool) -> None:
    if share:
        request.getfixturevalue("other_filesystem")
    batch = new_batch("B-0021", 3 * 1024 * 1024)
    drop = tmp_path / "drop"
    drop.mkdir()
    final = drop / batch.path.name

    def someone_else_writes(done: int, total: int) -> None:  # while we copy, another writer takes the name
        if not final.exists():
            final.write_bytes(b"someone else's batch")

    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                       SqliteUploadState(ledger, drop.as_uri()), progress=someone_else_writes)
    assert final.read_bytes() == b"someone else's batch"
    assert not list(drop.glob("*.part"))


def test_a_symlink_at_the_final_name_is_a_clash_not_a_delivery(new_batch, tmp_path: Path, ledger) -> None:
    batch = new_batch("B-0022", 10_000)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / batch.path.name).symlink_to(batch.path)  # same bytes, through a link: not our delivery
    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        FileDropDestination(drop).send(batch.path, batch.batch_id, batch.sha256, batch.size,
                                       SqliteUploadState(ledger, drop.as_uri()))
    assert (drop / batch.path.name).is_symlink()
