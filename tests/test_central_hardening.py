"""``central open`` after the security review (issue 19): the site registry ties a batch to the key
registered for the site it claims; one private copy is verified and decrypted; limits and free
space are checked before unpacking; only ``ED`` signatures; every malformed member is exit 12."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard
from crypto_fixtures import reg, resign, seal_raw_batch, tar_bytes

from sfr_gateway.batch import write as package
from sfr_gateway.batch.names import signature_path
from sfr_gateway.central import CentralHome, OpenLimits, SiteRegistry, open_batch, opener
from sfr_gateway.cli import main
from sfr_gateway.crypto import age, sign
from sfr_gateway.errors import IntegrityError, StorageError

CENTRAL = age.Identity.generate()
KEY_A, KEY_B = sign.generate_signing_key(), sign.generate_signing_key()
PUB_A, PUB_B = sign.PublicKey.of(KEY_A), sign.PublicKey.of(KEY_B)
SITES = {"SITE-A": PUB_A, "SITE-B": PUB_B}


def info(batch_id: str = "b-1", site: str = "SITE-A") -> package.BatchInfo:
    return package.BatchInfo(site=site, batch_id=batch_id, profile="sfr-covid")


def items(n: int = 3) -> list[tuple[str, bytes]]:
    return [(f"s/{i}.dcm", os.urandom(20_000) + bytes(30_000)) for i in range(n)]


def manifest(files: list[tuple[str, bytes]], batch_id: str = "evil", site: str = "SITE-A") -> bytes:
    rows = [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files]
    doc = package.build_manifest(info(batch_id, site), package.dt.datetime.now(package.dt.UTC), rows)
    return json.dumps(doc).encode()


def nothing_left(out: Path) -> bool:
    return not out.exists() or list(out.iterdir()) == []


@pytest.fixture
def central_home(tmp_path: Path) -> Path:
    """A CENTRAL_HOME with SITE-A and SITE-B registered, and the central identity (0600)."""
    home = tmp_path / "central-home"
    for site, key in (("SITE-A", KEY_A), ("SITE-B", KEY_B)):
        pub = tmp_path / f"{site}.pub"
        pub.write_text(key.minisign_public())
        assert main(["central", "--central-home", str(home), "site", "add", site, str(pub)]) == 0
    (home / "central.key").write_text(age.identity_file_text(CENTRAL))
    (home / "central.key").chmod(0o600)
    return home


def open_cli(home: Path, batch: Path, out: Path) -> int:
    return main(["central", "--central-home", str(home), "open", str(batch), "--output", str(out)])


# --------------------------------------------------------------------------- the registry


def test_registry_commands_files_and_modes(tmp_path: Path, cli) -> None:
    home = tmp_path / "ch"
    pub = tmp_path / "a.pub"
    pub.write_text(KEY_A.minisign_public())
    r = cli("central", "--central-home", home, "site", "add", "SITE-A", pub)
    assert r.exit_code == 0 and sign.key_id_hex(PUB_A.key_id) in r.stdout
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "sites.json").stat().st_mode) == 0o644
    assert cli("central", "--central-home", home, "site", "add", "SITE-A", pub).exit_code == 0  # idempotent
    other = PUB_B.to_base64()
    r = cli("central", "--central-home", home, "site", "add", "SITE-A", other)
    assert r.exit_code == 8 and "--also" in r.stderr  # a second key only on purpose (a rotation)
    assert cli("central", "--central-home", home, "site", "add", "SITE-A", other, "--also").exit_code == 0
    r = cli("central", "--central-home", home, "site", "add", "SITE-C", pub)
    assert r.exit_code == 8 and "already registered for site SITE-A" in r.stderr  # a key signs for one site
    assert cli("central", "--central-home", home, "site", "add", "bad site!", other).exit_code == 8
    listed = json.loads(cli("central", "--central-home", home, "site", "list", "--json").stdout)
    assert [(e["site"], e["key_id"]) for e in listed] == [("SITE-A", sign.key_id_hex(PUB_A.key_id)),
                                                          ("SITE-A", sign.key_id_hex(PUB_B.key_id))]
    r = cli("central", "--central-home", home, "site", "remove", "SITE-A", "--key", sign.key_id_hex(PUB_A.key_id))
    assert r.exit_code == 0
    assert [e.key for e in SiteRegistry.load(CentralHome(home))] == [PUB_B]
    assert cli("central", "--central-home", home, "site", "remove", "SITE-A").exit_code == 0
    assert cli("central", "--central-home", home, "site", "remove", "SITE-A").exit_code == 8
    assert "no site registered" in cli("central", "--central-home", home, "site", "list").stdout


@pytest.mark.parametrize("key", [
    "not a key",
    base64.b64encode(b"Ed" + b"\x01" * 8 + bytes(32)).decode(),  # y = 0: a point of order 4
    base64.b64encode(b"Ed" + b"\x02" * 8 + b"\x01" + bytes(31)).decode(),  # the identity (order 1)
    base64.b64encode(b"Ed" + b"\x03" * 8 + b"\xff" * 31 + b"\x7f").decode(),  # y >= p: not canonical
    base64.b64encode(b"Ed" + b"\x04" * 8 + b"\x02" + bytes(31)).decode(),  # y = 2: not on the curve
], ids=["garbage", "order-4", "identity", "non-canonical", "off-curve"])
def test_unusable_keys_are_refused_at_add(tmp_path: Path, cli, key: str) -> None:
    r = cli("central", "--central-home", tmp_path / "ch", "site", "add", "SITE-A", key)
    assert r.exit_code == 4, r.stderr
    assert not (tmp_path / "ch" / "sites.json").exists()


def test_a_registry_others_can_write_is_refused(central_home: Path, tmp_path: Path, cli) -> None:
    batch = package.write_batch(tmp_path / "o", info(), items(1), [CENTRAL.recipient], KEY_A).path
    (central_home / "sites.json").chmod(0o666)
    assert open_cli(central_home, batch, tmp_path / "in") == 4
    r = cli("central", "--central-home", central_home, "site", "list")
    assert r.exit_code == 4 and "chmod 644" in r.stderr
    (central_home / "sites.json").chmod(0o644)
    central_home.chmod(0o777)
    assert open_cli(central_home, batch, tmp_path / "in") == 4
    central_home.chmod(0o700)
    assert open_cli(central_home, batch, tmp_path / "in") == 0


def test_a_site_may_hold_two_keys_during_a_rotation(tmp_path: Path) -> None:
    new = sign.generate_signing_key()
    registry = SiteRegistry.of({"SITE-A": [PUB_A, sign.PublicKey.of(new)]})
    old_batch = package.write_batch(tmp_path / "o", info("b-old"), items(1), [CENTRAL.recipient], KEY_A).path
    new_batch = package.write_batch(tmp_path / "o", info("b-new"), items(1), [CENTRAL.recipient], new).path
    assert open_batch(old_batch, [CENTRAL], registry, tmp_path / "in").key_id == sign.key_id_hex(PUB_A.key_id)
    assert open_batch(new_batch, [CENTRAL], registry, tmp_path / "in").key_id == sign.key_id_hex(new.key_id)


# --------------------------------------------------------------------------- who signed, which file


def test_a_batch_signed_by_another_registered_site_is_refused(central_home: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # before: the operator's --site-key verified it, and the batch opened "from site B"
    batch = package.write_batch(tmp_path / "o", info(site="SITE-B"), items(), [CENTRAL.recipient], KEY_A).path
    assert open_cli(central_home, batch, tmp_path / "in") == IntegrityError.exit_code
    assert "key of site SITE-A" in capsys.readouterr().err and nothing_left(tmp_path / "in")
    with pytest.raises(IntegrityError, match="claims site SITE-B"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in")
    with pytest.raises(TypeError, match="not a bare key"):
        open_batch(batch, [CENTRAL], PUB_A, tmp_path / "in")  # type: ignore[arg-type]


def test_a_batch_of_an_unregistered_site_is_refused(tmp_path: Path) -> None:
    batch = package.write_batch(tmp_path / "o", info(site="SITE-Z"), items(1), [CENTRAL.recipient], KEY_A).path
    with pytest.raises(IntegrityError, match="site 'SITE-Z' is not registered"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in")


def test_the_signed_file_name_must_be_the_batch_name(tmp_path: Path) -> None:
    result = package.write_batch(tmp_path / "o", info("b-1"), items(1), [CENTRAL.recipient], KEY_A)
    renamed = result.path.with_name("b-2.tar.zst.age")
    result.path.rename(renamed)
    result.signature_path.rename(signature_path(renamed))
    with pytest.raises(IntegrityError, match="signed for file 'b-1.tar.zst.age'"):
        open_batch(renamed, [CENTRAL], SITES, tmp_path / "in")


def test_a_legacy_Ed_signature_is_refused(tmp_path: Path) -> None:  # noqa: N802 - minisign's algorithm name
    # before: accepted, through a second path that reads the whole file into memory
    result = package.write_batch(tmp_path / "o", info(), items(1), [CENTRAL.recipient], KEY_A)
    data = result.path.read_bytes()
    comment = package.trusted_comment("SITE-A", "b-1", hashlib.sha256(data).hexdigest(), result.path.name)
    signature = KEY_A.private.sign(data)
    legacy = sign.Signature(sign.ALG_LEGACY, KEY_A.key_id, signature, comment,
                            KEY_A.private.sign(signature + comment.encode()), "legacy")
    assert sign.verify_file(result.path, legacy, PUB_A)  # a genuine Ed signature by the registered key
    result.signature_path.write_text(legacy.to_text())
    with pytest.raises(IntegrityError, match=r"legacy minisign \(Ed\) signature refused"):
        open_batch(result.path, [CENTRAL], SITES, tmp_path / "in")


# --------------------------------------------------------------------------- one copy


def test_a_swap_between_the_check_and_the_decryption_is_never_decrypted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone holding the central public key can make a valid age file; swapped in after the
    signature check, it must never be decrypted nor parsed (before: read a second time, decrypted
    and its tar parsed before the hash check refused it)."""
    files = items()
    result = package.write_batch(tmp_path / "o", info(), files, [CENTRAL.recipient], KEY_A)
    hostile = seal_raw_batch(tmp_path, "hostile", tar_bytes([reg("manifest.json", b"{not json")]),
                             [CENTRAL.recipient], KEY_B).read_bytes()
    real_verify = opener.verify_digest
    swapped = []

    def verify_then_swap(*args: object) -> object:
        verified = real_verify(*args)  # type: ignore[arg-type]
        [copy] = (tmp_path / "in").glob(".sfr-open.*/.batch.age")  # what will be decrypted: ours alone
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        result.path.write_bytes(hostile)  # the attacker wins the race right after the check
        swapped.append(True)
        return verified

    monkeypatch.setattr(opener, "verify_digest", verify_then_swap)
    opened = open_batch(result.path, [CENTRAL], SITES, tmp_path / "in")
    assert swapped and opened.sha256 == result.sha256  # what was verified is what was opened
    for name, data in files:
        assert (opened.directory / name).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["b-1"]  # the private copy is gone


# --------------------------------------------------------------------------- limits


def test_an_oversized_manifest_is_refused_before_unpacking(central_home: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    batch = package.write_batch(tmp_path / "o", info(), items(3), [CENTRAL.recipient], KEY_A).path
    (central_home / "config.toml").write_text("[open]\nmax_unpacked_bytes = 100000\n")
    assert open_cli(central_home, batch, tmp_path / "in") == IntegrityError.exit_code
    assert "max_unpacked_bytes = 100000" in capsys.readouterr().err and nothing_left(tmp_path / "in")
    (central_home / "config.toml").write_text("[open]\nmax_files = 2\n")
    assert open_cli(central_home, batch, tmp_path / "in") == IntegrityError.exit_code
    assert "max_files = 2" in capsys.readouterr().err and nothing_left(tmp_path / "in")
    (central_home / "config.toml").write_text("[open]\nmax_file = 2\n")
    assert open_cli(central_home, batch, tmp_path / "in") == 3  # a typo in the settings is a config error
    (central_home / "config.toml").unlink()
    assert open_cli(central_home, batch, tmp_path / "in") == 0


def test_a_decompression_bomb_is_refused_by_the_ratio_limit(tmp_path: Path) -> None:
    # before: a batch of a few kB unpacked to 64 MiB without a question
    zeros = bytes(64 * 1024 * 1024)
    batch = seal_raw_batch(tmp_path, "bomb", tar_bytes([reg("manifest.json", manifest([("z.dcm", zeros)], "bomb")),
                                                        reg("z.dcm", zeros)]), [CENTRAL.recipient], KEY_A, "SITE-A")
    assert batch.stat().st_size < 64 * 1024
    with pytest.raises(IntegrityError, match="max_ratio"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in")
    assert nothing_left(tmp_path / "in")
    opened = open_batch(batch, [CENTRAL], SITES, tmp_path / "in", limits=OpenLimits(max_ratio=100_000))
    assert opened.bytes == len(zeros)  # the same batch, when the host allows that ratio


def test_zero_padding_after_the_tar_cannot_grow_without_bound(tmp_path: Path) -> None:
    files = [("a.dcm", b"A" * 1000)]
    tar = tar_bytes([reg("manifest.json", manifest(files, "pad")), reg(*files[0])]) + bytes(32 * 1024 * 1024)
    batch = seal_raw_batch(tmp_path, "pad", tar, [CENTRAL.recipient], KEY_A, "SITE-A")
    with pytest.raises(IntegrityError, match="more than its manifest declares"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in", limits=OpenLimits(max_ratio=10**9))
    assert nothing_left(tmp_path / "in")


def test_no_room_is_a_storage_error_before_anything_is_written(central_home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    batch = package.write_batch(tmp_path / "o", info(), items(1), [CENTRAL.recipient], KEY_A).path
    (central_home / "config.toml").write_text(f"[open]\nreserve_bytes = {2**62}\n")
    assert open_cli(central_home, batch, tmp_path / "in") == StorageError.exit_code == 16
    err = capsys.readouterr().err
    assert "reserve_bytes" in err and "the private copy" in err and nothing_left(tmp_path / "in")  # before copying


def test_files_larger_than_the_free_space_are_refused_before_the_first_is_written(tmp_path: Path) -> None:
    """The private copy fits, what the manifest declares does not (1 PiB): refused after reading
    the manifest and before any member, whatever the limits allow."""
    size = 2**50
    doc = json.loads(manifest([("z.dcm", b"")], "huge"))
    doc["files"][0]["size"] = doc["counts"]["bytes"] = size
    batch = seal_raw_batch(tmp_path, "huge", tar_bytes([reg("manifest.json", json.dumps(doc).encode()),
                                                        reg("z.dcm", b"z" * 4096)]),
                           [CENTRAL.recipient], KEY_A, "SITE-A")
    roomy = OpenLimits(max_unpacked_bytes=2**60, max_ratio=2**60, reserve_bytes=0)
    with pytest.raises(StorageError, match=f"batch huge needs {size + len(json.dumps(doc))} bytes"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in", limits=roomy)
    assert nothing_left(tmp_path / "in")


# --------------------------------------------------------------------------- malformed members


def _typed(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member, b""


def _patch_header(tar: bytes, index: int, offset: int, value: bytes, *, fix_checksum: bool = True) -> bytes:
    """Change bytes of the ``index``-th 512-byte block (a header) of a tar, and its checksum."""
    data = bytearray(tar)
    start = index * 512
    data[start + offset : start + offset + len(value)] = value
    if fix_checksum:
        header = data[start : start + 512]
        header[148:156] = b" " * 8
        data[start + 148 : start + 156] = b"%06o\0 " % sum(header)
    return bytes(data)


def _with_pax(member: tuple[tarfile.TarInfo, bytes], pax: dict[str, str]) -> tuple[tarfile.TarInfo, bytes]:
    member[0].pax_headers = pax
    return member


A = [("a.dcm", b"A" * 600)]
M = reg("manifest.json", manifest(A, "m"))
MANIFEST_BLOCKS = 1 + (len(M[1]) + 511) // 512  # header + data blocks of the manifest member
MALFORMED = {
    "file inside manifest.json": tar_bytes([reg("manifest.json", manifest([("manifest.json/x", b"x")], "m")),
                                            reg("manifest.json/x", b"x")]),
    "name too long for the file system": tar_bytes([reg("manifest.json", manifest([("n" * 300, b"x")], "m")),
                                                    reg("n" * 300, b"x")]),
    "hard link": tar_bytes([M, _typed("a.dcm", tarfile.LNKTYPE, "manifest.json")]),
    "character device": tar_bytes([M, _typed("a.dcm", tarfile.CHRTYPE)]),
    "fifo": tar_bytes([M, _typed("a.dcm", tarfile.FIFOTYPE)]),
    "folder": tar_bytes([M, _typed("a.dcm", tarfile.DIRTYPE)]),
    "bad checksum": _patch_header(tar_bytes([M, reg(*A[0])]), MANIFEST_BLOCKS, 0, b"b", fix_checksum=False),
    "GNU sparse": _patch_header(tar_bytes([M, reg(*A[0])]), MANIFEST_BLOCKS, 156, b"S"),
    "bad size digits": _patch_header(tar_bytes([M, reg(*A[0])]), MANIFEST_BLOCKS, 124, b"0000000012x\0"),
    "not ustar": _patch_header(tar_bytes([M, reg(*A[0])]), MANIFEST_BLOCKS, 257, b"xxxxx\0"),
    "huge PAX header": tar_bytes([M, _with_pax(reg(*A[0]), {"comment": "c" * 100_000})]),
    "truncated": tar_bytes([M, reg(*A[0])])[: MANIFEST_BLOCKS * 512 + 700],
    "lone zero block": tar_bytes([M])[: MANIFEST_BLOCKS * 512] + bytes(512) + tar_bytes([reg(*A[0])]),
    "data after the end of the archive": tar_bytes([M, reg(*A[0])]) + b"x" * 512,
}


def test_a_manifest_larger_than_64_MiB_is_refused_before_it_is_read(tmp_path: Path) -> None:  # noqa: N802
    """Its header is enough: the batch holds no byte of it (before: read up to the stream cap)."""
    tar = _patch_header(tar_bytes([reg("manifest.json", b"")]), 0, 124, b"%011o\0" % (opener.MAX_MANIFEST_BYTES + 1))
    batch = seal_raw_batch(tmp_path, "big", tar, [CENTRAL.recipient], KEY_A, "SITE-A")
    with pytest.raises(IntegrityError, match="manifest.json is 67108865 bytes, more than the 67108864 allowed"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in")
    assert nothing_left(tmp_path / "in")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_member_is_an_integrity_error(central_home: Path, tmp_path: Path, case: str) -> None:
    # before: e.g. a member named manifest.json/x raised FileExistsError (exit 1, "a bug")
    batch = seal_raw_batch(tmp_path, "m", MALFORMED[case], [CENTRAL.recipient], KEY_A, "SITE-A")
    assert open_cli(central_home, batch, tmp_path / "in") == IntegrityError.exit_code
    assert nothing_left(tmp_path / "in")


def test_the_strict_reader_opens_what_stock_tar_writes(tmp_path: Path) -> None:
    """GNU and PAX formats, long names (GNU long name records, PAX path records) and a size in a
    PAX header all read back; the writer's own batches are covered by every other test."""
    long_name = "d" * 120 + "/" + "f" * 150 + ".dcm"
    files = [(long_name, b"L" * 777), ("é/ü.dcm", b"U" * 5)]
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for name, data in [("manifest.json", manifest(files, f"f{fmt}")), *files]:
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tf.addfile(entry, io.BytesIO(data))
        batch = seal_raw_batch(tmp_path, f"f{fmt}", buf.getvalue(), [CENTRAL.recipient], KEY_A, "SITE-A")
        opened = open_batch(batch, [CENTRAL], SITES, tmp_path / "in")
        assert (opened.directory / long_name).read_bytes() == b"L" * 777
        assert (opened.directory / "é" / "ü.dcm").read_bytes() == b"U" * 5


def test_resigned_by_the_registered_key_still_goes_through_every_later_check(tmp_path: Path) -> None:
    """The signature is necessary, not sufficient: a registered site's flipped ciphertext is refused."""
    batch = package.write_batch(tmp_path / "o", info(), items(1), [CENTRAL.recipient], KEY_A).path
    data = bytearray(batch.read_bytes())
    data[-100] ^= 1
    batch.write_bytes(bytes(data))
    resign(batch, KEY_A, "SITE-A", "b-1")
    with pytest.raises(IntegrityError, match="age: payload altered"):
        open_batch(batch, [CENTRAL], SITES, tmp_path / "in")
    assert zstandard  # the payload is zstd: imported for the bomb tests' sizes
