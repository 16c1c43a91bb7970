"""Batches: manifest first, tar+zstd+age, signed, atomic, never regenerated; stock tools open them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
import zstandard
from crypto_fixtures import CHUNK, require_binary, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfr_gateway import __version__
from sfr_gateway.batch import tarzst
from sfr_gateway.batch import write as package
from sfr_gateway.central import open_batch
from sfr_gateway.crypto import age, sign
from sfr_gateway.errors import IntegrityError, KeyFileError

CENTRAL = age.Identity.generate()
ROTATED = age.Identity.generate()
KEY = sign.generate_signing_key()
INFO = package.BatchInfo(
    site="CHU-TEST",
    batch_id="b-0001",
    profile="sfr-covid",
    options=("retain-patient-characteristics",),
    ps315_edition="2026d",
    patients=(package.PatientConsent("SFR-CHU-TEST-7Q2K", "consented"),),
)


def unpack(path: Path, identity: age.Identity = CENTRAL) -> list[tuple[str, bytes]]:
    with open(path, "rb") as fh:
        plain = age.Decryptor(fh, [identity])
        stream = zstandard.ZstdDecompressor().stream_reader(plain, read_across_frames=True)
        tar = io.BytesIO(stream.read())
    with tarfile.open(fileobj=tar, mode="r:") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]


def files(n: int = 4) -> list[tuple[str, bytes]]:
    return [(f"1.2.3/series{i % 2}/{i:04d}.dcm", os.urandom(1000 + i * 7777)) for i in range(n)]


def test_round_trip_with_manifest_first(tmp_path: Path) -> None:
    members = files()
    result = package.write_batch(tmp_path, INFO, iter(members), [CENTRAL.recipient, ROTATED.recipient], KEY)
    assert result.path == tmp_path / "b-0001.tar.zst.age"
    assert result.signature_path == tmp_path / "b-0001.tar.zst.age.minisig"
    for who in (CENTRAL, ROTATED):  # two recipients during a key rotation
        got = unpack(result.path, who)
        assert got[0][0] == "manifest.json"
        assert got[1:] == members
    manifest = json.loads(unpack(result.path)[0][1])
    assert manifest == result.manifest
    assert manifest["payload"] == "tar+zstd" and manifest["format"] == "sfr-gateway-batch/1"
    assert manifest["site"] == "CHU-TEST" and manifest["batch_id"] == "b-0001"
    assert manifest["gateway_version"] == __version__
    assert manifest["profile"] == {"name": "sfr-covid", "options": ["retain-patient-characteristics"]}
    assert manifest["ps315_edition"] == "2026d"
    assert manifest["patients"] == [
        {"pseudonym": "SFR-CHU-TEST-7Q2K", "consent_status": "consented"}]  # no consent date: see PatientConsent
    assert manifest["files"] == [
        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in members]
    assert manifest["counts"] == {"files": 4, "bytes": sum(len(d) for _, d in members), "patients": 1}
    assert manifest["created"].endswith("Z")
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.size == result.path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-0001.tar.zst.age", "b-0001.tar.zst.age.minisig"]


def test_signature_names_site_batch_and_sha256(tmp_path: Path) -> None:
    result = package.write_batch(tmp_path, INFO, files(2), [CENTRAL.recipient], KEY)
    sig = sign.verify_file(result.path, result.signature_path.read_text(), sign.PublicKey.of(KEY))
    assert sign.parse_trusted_comment(sig.trusted_comment) == {
        "site": "CHU-TEST", "batch": "b-0001", "sha256": result.sha256, "file": "b-0001.tar.zst.age"}
    before = result.signature_path.read_text()
    result.signature_path.unlink()  # crash between batch and signature: re-sign gives the same bytes
    package.sign_batch(result.path, "CHU-TEST", "b-0001", KEY)
    assert result.signature_path.read_text() == before


names = st.lists(
    st.text("abcxyz019._-é", min_size=1, max_size=12).filter(lambda s: s not in (".", "..")),
    min_size=1, max_size=3).map("/".join)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.dictionaries(names, st.binary(max_size=3 * CHUNK), max_size=5))
def test_round_trip_any_members(tmp_path_factory: pytest.TempPathFactory, members: dict[str, bytes]) -> None:
    items = [(n, d) for n, d in members.items() if n != "manifest.json"]
    folders = {"/".join(n.split("/")[:i]) for n, _ in items for i in range(1, n.count("/") + 1)}
    items = [(n, d) for n, d in items if n not in folders]
    out = tmp_path_factory.mktemp("ob")
    result = package.write_batch(out, INFO, items, [CENTRAL.recipient], KEY)
    assert unpack(result.path)[1:] == items


def test_refuses_to_regenerate_a_batch(tmp_path: Path) -> None:
    first = package.write_batch(tmp_path, INFO, files(1), [CENTRAL.recipient], KEY)
    before = first.path.read_bytes()
    with pytest.raises(IntegrityError, match="never regenerated"):
        package.write_batch(tmp_path, INFO, files(1), [CENTRAL.recipient], KEY)
    assert first.path.read_bytes() == before


def test_failure_midway_leaves_nothing(tmp_path: Path) -> None:
    def broken() -> Iterator[tuple[str, bytes]]:
        yield "a.dcm", os.urandom(200_000)
        raise OSError("source vanished")

    with pytest.raises(OSError):
        package.write_batch(tmp_path, INFO, broken(), [CENTRAL.recipient], KEY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "a//b", "", "./a", "back\\slash", "nul\0", "manifest.json"])
def test_unsafe_or_reserved_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        package.write_batch(tmp_path, INFO, [(name, b"x")], [CENTRAL.recipient], KEY)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        package.write_batch(tmp_path, INFO, [("a", b"1"), ("a", b"2")], [CENTRAL.recipient], KEY)
    with pytest.raises(KeyFileError):
        package.write_batch(tmp_path, INFO, [("a", b"1")], [], KEY)
    for batch_id in ["../x", ".hidden", "a/b", ""]:
        with pytest.raises(ValueError):
            package.write_batch(tmp_path, package.BatchInfo("S", batch_id, "p"), [], [CENTRAL.recipient], KEY)
    with pytest.raises(ValueError):
        package.write_batch(tmp_path, package.BatchInfo("S\tX", "b", "p"), [], [CENTRAL.recipient], KEY)
    assert list(tmp_path.iterdir()) == []


def test_empty_batch_is_valid(tmp_path: Path) -> None:
    result = package.write_batch(tmp_path, INFO, [], [CENTRAL.recipient], KEY)
    got = unpack(result.path)
    assert [n for n, _ in got] == ["manifest.json"]
    assert json.loads(got[0][1])["counts"]["files"] == 0


def test_stock_tools_open_a_batch(tmp_path: Path) -> None:
    ageb, zstd, minisign = require_binary("age"), require_binary("zstd"), require_binary("minisign")
    require_binary("tar")
    key_file = tmp_path / "central.key"
    key_file.write_text(age.identity_file_text(CENTRAL))
    (tmp_path / "site.pub").write_text(sign.public_key_file_text(KEY))
    members = files(6)
    result = package.write_batch(tmp_path / "outbox", INFO, members, [CENTRAL.recipient], KEY)
    verified = run([minisign, "-V", "-p", str(tmp_path / "site.pub"), "-m", str(result.path)])
    assert verified.returncode == 0, verified.stderr
    assert f"sha256:{result.sha256}".encode() in verified.stdout
    dest = tmp_path / "unpacked"
    dest.mkdir()
    pipeline = f"'{ageb}' -d -i '{key_file}' '{result.path}' | '{zstd}' -d | tar -x -C '{dest}'"
    out = run(["bash", "-o", "pipefail", "-c", pipeline])
    assert out.returncode == 0, out.stderr
    for name, data in members:
        assert (dest / name).read_bytes() == data
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["counts"]["files"] == 6


def test_pyrage_opens_a_batch(tmp_path: Path) -> None:
    theirs = pyrage.x25519.Identity.generate()
    recipient = age.Recipient.parse(str(theirs.to_public()))
    members = files(3)
    result = package.write_batch(tmp_path, INFO, members, [recipient], KEY)
    compressed = pyrage.decrypt(result.path.read_bytes(), [theirs])
    tar = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed), read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert tf.getnames() == ["manifest.json"] + [n for n, _ in members]


def test_synthetic_ct_compresses_to_about_half(tmp_path: Path) -> None:
    from sfr_gateway import sample

    export = sample.generate_export(tmp_path / "export", patients=1, rows=128, cols=128, slices=8)
    cts = [p for p in export.files if p.stat().st_size > 20_000]
    assert cts
    result = package.write_batch(tmp_path / "ob", INFO, [(p.name, p.read_bytes()) for p in cts], [CENTRAL.recipient], KEY)
    assert result.ratio < 0.6, result.ratio


def test_packaging_memory_is_bounded(tmp_path: Path) -> None:
    block = os.urandom(512 * 1024)

    def members() -> Iterator[tuple[str, bytes]]:
        for i in range(96):  # 48 MiB through the pipeline
            yield f"f{i}.dcm", block

    tracemalloc.start()
    try:
        result = package.write_batch(tmp_path, INFO, members(), [CENTRAL.recipient], KEY, zstd_threads=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.plaintext_bytes == 48 * 1024 * 1024
    # the pieces in flight (each piece and its frame: random bytes do not compress), not the batch
    in_flight = tarzst.PENDING_PER_THREAD * 2 * 2 * tarzst.PIECE_BYTES
    assert peak < in_flight + 4 * 1024 * 1024 < 24 * 1024 * 1024, peak


def test_hash_file_hashes_the_whole_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb") as fh:
        fh.seek(12345)  # the position does not matter: hashed from the start
        sha, blake, size = package.hash_file(fh, block=100_000)
    assert size == len(data)
    assert sha.hexdigest() == hashlib.sha256(data).hexdigest()
    assert blake.digest() == hashlib.blake2b(data).digest()


@pytest.mark.parametrize("expected", [None, 1, 400])
def test_manifest_bigger_than_its_room_still_gives_a_valid_batch(tmp_path: Path, expected: int | None) -> None:
    """400 long-named files: ~1 chunk of room (no count, or a wrong one) is too little, so the body
    is moved under a new key; the right count gives enough room at once. All open the same."""
    names = [f"{'p' * 60}/{'s' * 60}/{'r' * 60}/{i:06d}{'x' * 40}.dcm" for i in range(400)]
    members = [(name, f"file {i}".encode() * (i % 7 + 1)) for i, name in enumerate(names)]
    out = tmp_path / f"out-{expected}"
    result = package.write_batch(out, package.BatchInfo("S", "b1", "p"), members, [CENTRAL.recipient], KEY,
                                 expected_files=expected)
    assert not list(out.glob(".*"))  # no temp file left behind, moved or not
    opened = open_batch(result.path, [CENTRAL], {"S": sign.PublicKey.of(KEY)}, tmp_path / f"opened-{expected}")
    assert sorted(p.relative_to(opened.directory).as_posix() for p in opened.directory.rglob("*.dcm")) == sorted(names)
    for name, data in members[:5]:
        assert (opened.directory / name).read_bytes() == data


def test_list_batches_and_remove_stale_temps(tmp_path: Path) -> None:
    assert package.list_batches(tmp_path / "none") == []
    a = package.write_batch(tmp_path, package.BatchInfo("S", "b2", "p"), [], [CENTRAL.recipient], KEY)
    b = package.write_batch(tmp_path, package.BatchInfo("S", "b1", "p"), [], [CENTRAL.recipient], KEY)
    stale = tmp_path / ".b3.tar.zst.age.x1y2.tmp"  # what a crash mid-write leaves
    stale.write_bytes(b"partial ciphertext")
    assert package.list_batches(tmp_path) == [b.path, a.path]
    assert package.remove_stale_temps(tmp_path) == 1
    assert not stale.exists() and a.path.exists() and a.signature_path.exists()


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.text("ab.-_1", min_size=1, max_size=90), min_size=1, max_size=6),
       size=st.integers(-2, 8**11 - 1), mtime=st.integers(0, 2**33))
def test_fast_tar_headers_are_tarfiles_own(parts: list[str], size: int, mtime: int) -> None:
    """The hand-packed ustar header equals tarfile's, and is used whenever tarfile's ustar applies."""
    name = "/".join(parts)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    try:
        expected: bytes | None = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    except ValueError:
        expected = None
    assert tarzst.ustar_header(name, size, mtime) == expected
