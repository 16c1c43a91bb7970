"""The central host's opener: verify, decrypt, check the manifest, unpack atomically (or refuse)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from crypto_fixtures import (
    CHUNK,
    payload_offset,
    reg,
    require_binary,
    resign,
    run,
    seal_raw_batch,
    tar_bytes,
)

from sfr_gateway import central
from sfr_gateway.batch import write as package
from sfr_gateway.cli import cli, main
from sfr_gateway.crypto import age, sign
from sfr_gateway.errors import IntegrityError

CENTRAL = age.Identity.generate()
SITE = sign.generate_signing_key()
INFO = package.BatchInfo(site="SITE-T", batch_id="b-42", profile="sfr-covid", ps315_edition="2026d")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """The central identity, and the site's public key, registered for SITE-T in tmp_path/central-home."""
    identity = tmp_path / "central.key"
    identity.write_text(age.identity_file_text(CENTRAL))
    identity.chmod(0o600)
    pub = tmp_path / "site.pub"
    pub.write_text(sign.public_key_file_text(SITE))
    assert main(["central", "--central-home", str(tmp_path / "central-home"), "site", "add", "SITE-T", str(pub)]) == 0
    return identity, pub


def members(n: int = 3, size: int = 150_000) -> list[tuple[str, bytes]]:
    return [(f"study/series/{i}.dcm", os.urandom(size)) for i in range(n)]


def open_cli(batch: Path, keys: tuple[Path, Path], out: Path, *extra: str) -> int:
    return main(["central", "--central-home", str(keys[0].parent / "central-home"), "open", str(batch),
                 "--identity", str(keys[0]), "--output", str(out), *extra])


def test_open_round_trip(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    items = members()
    batch = package.write_batch(tmp_path / "outbox", INFO, items, [CENTRAL.recipient], SITE)
    assert open_cli(batch.path, keys, tmp_path / "in") == 0
    dest = tmp_path / "in" / "b-42"
    for name, data in items:
        assert (dest / name).read_bytes() == data
    assert json.loads((dest / "manifest.json").read_text()) == batch.manifest
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["b-42"]
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "study"]


def test_open_json_and_base64_site_key(tmp_path: Path) -> None:
    identity = tmp_path / "central.key"
    identity.write_text(age.identity_file_text(CENTRAL))
    identity.chmod(0o600)
    home = str(tmp_path / "central-home")
    assert main(["central", "--central-home", home, "site", "add", "SITE-T", sign.PublicKey.of(SITE).to_base64()]) == 0
    batch = package.write_batch(tmp_path / "outbox", INFO, members(1), [CENTRAL.recipient], SITE)
    res = CliRunner().invoke(cli, ["central", "--central-home", home, "open", str(batch.path), "-i", str(identity),
                                   "-o", str(tmp_path / "in"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["files"] == 1 and data["site"] == "SITE-T" and data["sha256"] == batch.sha256


def expect_refusal(batch: Path, keys: tuple[Path, Path], out: Path, capsys: pytest.CaptureFixture[str],
                   match: str) -> None:
    assert open_cli(batch, keys, out) == IntegrityError.exit_code
    err = capsys.readouterr().err
    assert match in err, err
    assert not out.exists() or list(out.iterdir()) == []  # nothing unpacked, no temp folder left


def test_flipped_byte_is_refused(tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    batch = package.write_batch(tmp_path / "o", INFO, members(), [CENTRAL.recipient], SITE).path
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0x10
    batch.write_bytes(bytes(data))
    expect_refusal(batch, keys, tmp_path / "in", capsys, "signature")
    resign(batch, SITE, "SITE-T", "b-42")  # even with a valid signature, decryption catches it
    expect_refusal(batch, keys, tmp_path / "in", capsys, "age: payload altered")


def test_truncation_at_chunk_boundary_is_refused(tmp_path: Path, keys: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    batch = package.write_batch(tmp_path / "o", INFO, [("big.dcm", os.urandom(4 * CHUNK))], [CENTRAL.recipient], SITE).path
    data = batch.read_bytes()
    batch.write_bytes(data[: payload_offset(data) + 2 * (CHUNK + 16)])
    expect_refusal(batch, keys, tmp_path / "in", capsys, "signature")
    resign(batch, SITE, "SITE-T", "b-42")
    expect_refusal(batch, keys, tmp_path / "in", capsys, "age:")


def test_wrong_recipient_is_refused(tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    batch = package.write_batch(tmp_path / "o", INFO, members(1), [age.Identity.generate().recipient], SITE).path
    expect_refusal(batch, keys, tmp_path / "in", capsys, "no identity matches")


def test_bad_or_missing_signature_is_refused(tmp_path: Path, keys: tuple[Path, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = package.write_batch(tmp_path / "o", INFO, members(1), [CENTRAL.recipient], SITE)
    sig = result.signature_path.read_text()
    result.signature_path.write_text(sig.replace("batch:b-42", "batch:b-43"))
    expect_refusal(result.path, keys, tmp_path / "in", capsys, "trusted comment altered")
    result.signature_path.write_text(sign.sign_digest(hashlib.blake2b(result.path.read_bytes()).digest(),
                                                      sign.generate_signing_key(), "site:SITE-T\tbatch:b-42"))
    expect_refusal(result.path, keys, tmp_path / "in", capsys, "not by a key registered for site SITE-T")
    result.signature_path.unlink()
    expect_refusal(result.path, keys, tmp_path / "in", capsys, "no signature")


def test_signed_sha256_must_match(tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    result = package.write_batch(tmp_path / "o", INFO, members(1), [CENTRAL.recipient], SITE)
    comment = package.trusted_comment("SITE-T", "b-42", "0" * 64, result.path.name)
    blake = hashlib.blake2b(result.path.read_bytes()).digest()
    result.signature_path.write_text(sign.sign_digest(blake, SITE, comment))
    expect_refusal(result.path, keys, tmp_path / "in", capsys, "another SHA-256")


def manifest_for(items: list[tuple[str, bytes]], batch_id: str = "evil", site: str = "SITE-T") -> bytes:
    info = package.BatchInfo(site=site, batch_id=batch_id, profile="p")
    files = [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in items]
    return json.dumps(package.build_manifest(info, package.dt.datetime.now(package.dt.timezone.utc), files)).encode()


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, b""


GOOD = [("a.dcm", b"A" * 1000), ("b.dcm", b"B" * 10)]
HOSTILE = {
    "traversal": ([reg("manifest.json", manifest_for([("../x.dcm", b"x")])), reg("../x.dcm", b"x")], "unsafe file name"),
    "absolute": ([reg("manifest.json", manifest_for([("/tmp/x", b"x")])), reg("/tmp/x", b"x")], "unsafe file name"),
    "extra file": ([reg("manifest.json", manifest_for(GOOD)), *[reg(n, d) for n, d in GOOD], reg("c.dcm", b"c")],
                   "not in the manifest"),
    "missing file": ([reg("manifest.json", manifest_for(GOOD)), reg(*GOOD[0])], "missing"),
    "wrong content": ([reg("manifest.json", manifest_for(GOOD)), reg("a.dcm", b"Z" * 1000), reg(*GOOD[1])],
                      "SHA-256"),
    "wrong size": ([reg("manifest.json", manifest_for(GOOD)), reg("a.dcm", b"A" * 999), reg(*GOOD[1])], "size"),
    "duplicate": ([reg("manifest.json", manifest_for(GOOD)), *[reg(n, d) for n, d in GOOD], reg(*GOOD[0])],
                  "appears twice"),
    "symlink": ([reg("manifest.json", manifest_for([("a.dcm", b"")])), symlink("a.dcm", "/etc/passwd")],
                "not a regular file"),
    "manifest not first": ([reg(*GOOD[0]), reg("manifest.json", manifest_for(GOOD))], "first member"),
    "other batch id": ([reg("manifest.json", manifest_for(GOOD, batch_id="other")), *[reg(n, d) for n, d in GOOD]],
                       "differs from the signed"),
    "not json": ([reg("manifest.json", b"{nope")], "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_batches_are_refused(tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                     case: str) -> None:
    entries, match = HOSTILE[case]
    batch = seal_raw_batch(tmp_path, "evil", tar_bytes(entries), [CENTRAL.recipient], SITE)
    expect_refusal(batch, keys, tmp_path / "in", capsys, match)
    assert not (tmp_path / "x.dcm").exists()


def test_refuses_to_overwrite_an_opened_batch(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    batch = package.write_batch(tmp_path / "o", INFO, members(1), [CENTRAL.recipient], SITE)
    assert open_cli(batch.path, keys, tmp_path / "in") == 0
    assert open_cli(batch.path, keys, tmp_path / "in") == 8


def test_keygen(tmp_path: Path) -> None:
    out = tmp_path / "central.key"
    res = CliRunner().invoke(cli, ["central", "keygen", "--output", str(out)])
    assert res.exit_code == 0
    identity = age.parse_identities(out.read_text())[0]
    assert res.output.strip() == str(identity.recipient)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert main(["central", "keygen", "--output", str(out)]) == 4  # never overwrites a key
    assert age.parse_identities(out.read_text())[0] == identity
    res = CliRunner().invoke(cli, ["central", "keygen"])
    assert res.exit_code == 0 and "AGE-SECRET-KEY-1" in res.stdout


def test_opens_a_batch_built_with_stock_tools(tmp_path: Path) -> None:
    """A central key from Debian age-keygen; a batch made by tar | zstd | age and signed by minisign."""
    keygen, ageb, zstd, minisign = (require_binary(b) for b in ("age-keygen", "age", "zstd", "minisign"))
    key = tmp_path / "central.key"
    assert run([keygen, "-o", str(key)]).returncode == 0
    recipient = run([keygen, "-y", str(key)]).stdout.decode().strip()
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_bytes(manifest_for(GOOD, batch_id="stock"))
    for name, data in GOOD:
        (src / name).write_bytes(data)
    batch = tmp_path / "stock.tar.zst.age"
    built = run(["bash", "-o", "pipefail", "-c",
                 f"tar -C '{src}' -cf - manifest.json a.dcm b.dcm | '{zstd}' -q | '{ageb}' -r {recipient} > '{batch}'"])
    assert built.returncode == 0, built.stderr
    assert run([minisign, "-G", "-W", "-p", str(tmp_path / "m.pub"), "-s", str(tmp_path / "m.key")]).returncode == 0
    sha = hashlib.sha256(batch.read_bytes()).hexdigest()
    signed = run([minisign, "-S", "-s", str(tmp_path / "m.key"), "-m", str(batch),
                  "-t", f"site:SITE-T\tbatch:stock\tsha256:{sha}\tfile:{batch.name}"])
    assert signed.returncode == 0
    opened = central.open_batch(batch, central.load_identities(key),
                                {"SITE-T": central.parse_public_key(str(tmp_path / "m.pub"))}, tmp_path / "in")
    assert opened.files == 2 and (tmp_path / "in" / "stock" / "a.dcm").read_bytes() == GOOD[0][1]
