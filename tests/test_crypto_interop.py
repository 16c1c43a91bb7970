"""Interoperability with the reference tools: Debian age/age-keygen, PyPI pyrage, Debian minisign."""

from __future__ import annotations

import os
from pathlib import Path

import pyrage
import pytest
from crypto_fixtures import CHUNK, require_binary, run

from sfr_gateway.crypto import age, sign
from sfr_gateway.errors import IntegrityError

SIZES = [0, 1, CHUNK, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 300_001]


@pytest.fixture
def age_key(tmp_path: Path) -> Path:
    keygen = require_binary("age-keygen")
    key = tmp_path / "key.txt"
    assert run([keygen, "-o", str(key)]).returncode == 0
    return key


@pytest.mark.parametrize("size", SIZES)
def test_debian_age_decrypts_ours(tmp_path: Path, age_key: Path, size: int) -> None:
    ageb = require_binary("age")
    theirs = age.parse_identities(age_key.read_text())[0]
    data = os.urandom(size)
    (tmp_path / "f.age").write_bytes(age.encrypt_bytes(data, [age.Identity.generate().recipient, theirs.recipient]))
    out = run([ageb, "-d", "-i", str(age_key), str(tmp_path / "f.age")])
    assert out.returncode == 0, out.stderr
    assert out.stdout == data


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_debian_age(tmp_path: Path, age_key: Path, size: int) -> None:
    ageb = require_binary("age")
    ours = age.Identity.generate()
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    out = run([ageb, "-r", str(ours.recipient), "-o", str(tmp_path / "c.age"), str(tmp_path / "p")])
    assert out.returncode == 0, out.stderr
    assert age.decrypt_bytes((tmp_path / "c.age").read_bytes(), [ours]) == data
    # their identity file format is ours too
    theirs = age.parse_identities(age_key.read_text())
    assert run([ageb, "-r", str(theirs[0].recipient), "-o", str(tmp_path / "d.age"), str(tmp_path / "p")]).returncode == 0
    assert age.decrypt_bytes((tmp_path / "d.age").read_bytes(), theirs) == data


def test_debian_age_rejects_our_file_when_tampered(tmp_path: Path, age_key: Path) -> None:
    ageb = require_binary("age")
    theirs = age.parse_identities(age_key.read_text())[0]
    ct = bytearray(age.encrypt_bytes(os.urandom(3 * CHUNK), [theirs.recipient]))
    ct[-100] ^= 1
    (tmp_path / "f.age").write_bytes(bytes(ct))
    assert run([ageb, "-d", "-i", str(age_key), str(tmp_path / "f.age")]).returncode != 0


def test_age_keygen_recipient_matches_ours(tmp_path: Path, age_key: Path) -> None:
    keygen = require_binary("age-keygen")
    theirs = age.parse_identities(age_key.read_text())[0]
    out = run([keygen, "-y", str(age_key)])
    assert out.stdout.decode().strip() == str(theirs.recipient)


@pytest.mark.parametrize("size", SIZES)
def test_pyrage_both_ways(size: int) -> None:
    data = os.urandom(size)
    theirs = pyrage.x25519.Identity.generate()
    our_recipient = age.Recipient.parse(str(theirs.to_public()))
    assert pyrage.decrypt(age.encrypt_bytes(data, [our_recipient]), [theirs]) == data
    ours = age.Identity.generate()
    ct = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(str(ours.recipient))])
    assert age.decrypt_bytes(ct, [ours]) == data
    assert age.Identity.parse(str(theirs)).recipient == our_recipient
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(ct, [age.Identity.generate()])


# ---------------------------------------------------------------- minisign


def test_debian_minisign_verifies_our_signatures(tmp_path: Path) -> None:
    minisign = require_binary("minisign")
    key = sign.generate_signing_key()
    pub = sign.PublicKey.of(key)
    target = tmp_path / "batch.tar.zst.age"
    target.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    comment = "site:CHU-T\tbatch:b1\tsha256:abc"
    (tmp_path / "batch.tar.zst.age.minisig").write_text(sign.sign_file(target, key, comment))
    (tmp_path / "site.pub").write_text(sign.public_key_file_text(key))
    by_string = run([minisign, "-V", "-P", pub.to_base64(), "-m", str(target)])
    assert by_string.returncode == 0, by_string.stderr
    assert comment.encode() in by_string.stdout
    assert run([minisign, "-V", "-p", str(tmp_path / "site.pub"), "-m", str(target)]).returncode == 0
    with open(target, "r+b") as fh:
        fh.seek(12345)
        byte = fh.read(1)
        fh.seek(12345)
        fh.write(bytes([byte[0] ^ 1]))
    assert run([minisign, "-V", "-P", pub.to_base64(), "-m", str(target)]).returncode != 0


@pytest.mark.parametrize("legacy", [False, True], ids=["ED-prehashed", "Ed-legacy"])
def test_we_verify_debian_minisign_signatures(tmp_path: Path, legacy: bool) -> None:
    minisign = require_binary("minisign")
    pub_file, sec_file = tmp_path / "m.pub", tmp_path / "m.key"
    assert run([minisign, "-G", "-W", "-p", str(pub_file), "-s", str(sec_file)]).returncode == 0
    target = tmp_path / "f"
    target.write_bytes(os.urandom(200_000))
    cmd = [minisign, "-S", "-s", str(sec_file), "-m", str(target), "-t", "trusted words"] + (["-l"] if legacy else [])
    assert run(cmd).returncode == 0
    sig_text = (tmp_path / "f.minisig").read_text()
    result = sign.verify_file(target, sig_text, sign.PublicKey.load(pub_file))
    assert result.trusted_comment == "trusted words"
    assert result.algorithm == (b"Ed" if legacy else b"ED")
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(IntegrityError):
        sign.verify_file(target, sig_text, sign.PublicKey.load(pub_file))
