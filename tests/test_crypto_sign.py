"""minisign-format signatures: round trip, key files, and rejection of tampering."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfr_gateway.crypto import sign
from sfr_gateway.errors import IntegrityError, KeyFileError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.keys.files import create_signing_key, load_signing_key

KEY = sign.generate_signing_key()
PUB = sign.PublicKey.of(KEY)


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=5000),
       comment=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80))
def test_sign_verify_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes, comment: str) -> None:
    path = tmp_path_factory.mktemp("s") / "f"
    path.write_bytes(data)
    text = sign.sign_file(path, KEY, comment)
    assert sign.verify_file(path, text, PUB).trusted_comment == comment
    assert sign.verify_digest(text, PUB, hashlib.blake2b(data).digest()).trusted_comment == comment


def test_signature_file_shape(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    lines = sign.sign_file(path, KEY, "site:A").splitlines()
    assert lines[0].startswith("untrusted comment: ")
    assert lines[2] == "trusted comment: site:A"
    assert sign.Signature.parse("\n".join(lines)).algorithm == b"ED"


def test_tampering_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1000))
    text = sign.sign_file(path, KEY, "site:A\tbatch:1")
    forged_comment = text.replace("batch:1", "batch:2")
    with pytest.raises(IntegrityError, match="trusted comment"):
        sign.verify_file(path, forged_comment, PUB)
    other = sign.generate_signing_key()
    with pytest.raises(IntegrityError, match="not by the expected key"):
        sign.verify_file(path, text, sign.PublicKey.of(other))
    same_id_other_key = sign.PublicKey(PUB.key_id, other.public_bytes)
    with pytest.raises(IntegrityError, match="does not verify"):
        sign.verify_file(path, text, same_id_other_key)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="does not verify"):
        sign.verify_file(path, text, PUB)
    for broken in ["", text.replace("trusted comment: ", "comment: "), "\n".join(text.splitlines()[:3])]:
        with pytest.raises(IntegrityError):
            sign.verify_file(path, broken, PUB)


def test_comments_must_be_one_line(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError):
        sign.sign_file(path, KEY, "two\nlines")


def test_public_key_text_forms(tmp_path: Path) -> None:
    text = sign.public_key_file_text(KEY)
    assert text == PUB.file_text()
    assert text.startswith(f"untrusted comment: minisign public key {sign.key_id_hex(KEY.key_id)}\n")
    assert sign.PublicKey.parse(text) == PUB
    assert sign.PublicKey.parse(PUB.to_base64()) == PUB
    for bad in ["", "untrusted comment: x\n", "RWQ=", PUB.to_base64()[:-4]]:
        with pytest.raises(KeyFileError):
            sign.PublicKey.parse(bad)


def test_home_signing_key_and_public_file_agree(tmp_path: Path) -> None:
    home = HomePaths(tmp_path / "home")
    create_signing_key(home)
    key = load_signing_key(home)
    assert sign.PublicKey.load(home.signing_pub) == sign.PublicKey.of(key)
    data = tmp_path / "d"
    data.write_bytes(b"batch")
    assert sign.verify_file(data, sign.sign_file(data, key, "c"), sign.PublicKey.load(home.signing_pub))


def test_trusted_comment_fields() -> None:
    assert sign.parse_trusted_comment("site:A\tbatch:b-1\tsha256:ff\tfile:x.age") == {
        "site": "A", "batch": "b-1", "sha256": "ff", "file": "x.age"}


def test_private_key_file_round_trip_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "site-signing.key"
    sign.write_signing_key(path, KEY)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert sign.read_signing_key(path).public_bytes == KEY.public_bytes
    with pytest.raises(KeyFileError, match="overwrite"):
        sign.write_signing_key(path, sign.generate_signing_key())
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="group or others"):
        sign.read_signing_key(path)
    (tmp_path / "junk").write_text("nope")
    (tmp_path / "junk").chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        sign.read_signing_key(tmp_path / "junk")
    # the same format as HOME/keys/site-signing.key written by `init`
    home = HomePaths(tmp_path / "home")
    create_signing_key(home)
    assert sign.read_signing_key(home.signing_key).public_bytes == load_signing_key(home).public_bytes


def test_sign_bytes_matches_sign_file(tmp_path: Path) -> None:
    message = b'{"withdrawal": "SFR-X-1"}'
    text = sign.sign_bytes(message, KEY, "kind:withdrawal")
    path = tmp_path / "m"
    path.write_bytes(message)
    assert text == sign.sign_file(path, KEY, "kind:withdrawal")  # Ed25519 is deterministic
    assert sign.verify_bytes(message, text, PUB).trusted_comment == "kind:withdrawal"
    with pytest.raises(IntegrityError):
        sign.verify_bytes(message + b" ", text, PUB)


def test_comment_with_lone_surrogate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="surrogate"):
        sign.sign_file(path, KEY, "\ud800")


def test_comment_with_unicode_line_separators_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    comment = "site:A\u2028B\x85C\x0b"
    assert sign.verify_file(path, sign.sign_file(path, KEY, comment), PUB).trusted_comment == comment


# --- issue 21: what the mutation campaign over sign.py showed untested ---------------------------


def _legacy(data: bytes, comment: str = "c") -> str:
    """A legacy (``Ed``) signature of ``data``: Ed25519 over the whole message, as ``minisign -l``."""
    signature = KEY.private.sign(data)
    glob = KEY.private.sign(signature + comment.encode())
    return sign.Signature(sign.ALG_LEGACY, KEY.key_id, signature, comment, glob, "legacy").to_text()


def test_base64_outside_the_alphabet_is_refused(tmp_path: Path) -> None:
    """Lenient base64 decoding drops characters it does not know: a signature or key with junk
    inside its base64 would then verify. Both are refused."""
    path = tmp_path / "f"
    path.write_bytes(b"batch")
    lines = sign.sign_file(path, KEY, "site:A").split("\n")
    for i in (1, 3):  # the signature line and the global signature line
        junk = lines.copy()
        junk[i] = junk[i][:10] + "!" + junk[i][10:]
        with pytest.raises(IntegrityError, match="bad base64"):
            sign.verify_file(path, "\n".join(junk), PUB)
    b64 = PUB.to_base64()
    with pytest.raises(KeyFileError, match=r"^not a minisign public key \(bad base64\)$"):
        sign.PublicKey.parse(b64[:8] + "*" + b64[8:])


def test_public_key_refusals_say_why() -> None:
    with pytest.raises(KeyFileError, match=r"^not a minisign public key \(expected one base64 line\)$"):
        sign.PublicKey.parse("untrusted comment: x\n" + PUB.to_base64() + "\n" + PUB.to_base64())
    with pytest.raises(KeyFileError, match=r"^not a minisign Ed25519 public key$"):
        sign.PublicKey.parse(PUB.to_base64()[:-4])


def test_keys_and_signatures_are_values() -> None:
    """Frozen: a key or a parsed signature cannot be changed after it was checked, and both can
    be dictionary keys (the central host keeps site keys by id)."""
    text = sign.sign_bytes(b"m", KEY, "c")
    parsed = sign.Signature.parse(text)
    assert {PUB: "site"}[sign.PublicKey.parse(PUB.file_text())] == "site"
    assert hash(parsed) == hash(sign.Signature.parse(text))
    with pytest.raises(AttributeError):
        PUB.key = bytes(32)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        parsed.trusted_comment = "forged"  # type: ignore[misc]


def test_legacy_signatures_over_256_mib_are_refused_before_reading(tmp_path: Path) -> None:
    """The legacy algorithm reads the whole file into memory: over 256 MiB it is refused from the
    file's size alone (a sparse file: nothing is read)."""
    path = tmp_path / "big"
    with open(path, "wb") as fh:
        fh.truncate(256 * 1024 * 1024 + 1)
    with pytest.raises(IntegrityError, match="over 256 MiB"):
        sign.verify_file(path, _legacy(b""), PUB)
    small = tmp_path / "small"
    small.write_bytes(b"legacy message")
    assert sign.verify_file(small, _legacy(b"legacy message", "t"), PUB).trusted_comment == "t"


def test_signing_and_verifying_a_file_read_it_in_bounded_blocks(tmp_path: Path) -> None:
    """A batch is hashed in 1 MiB blocks: an 8 MiB file never sits in memory at once."""
    path = tmp_path / "batch"
    with open(path, "wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    tracemalloc.start()
    try:
        text = sign.sign_file(path, KEY, "c")
        sign.verify_file(path, text, PUB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def _exactly(message: str) -> str:
    """A ``match`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def test_key_file_refusals_say_why_and_where(tmp_path: Path) -> None:
    """Each refusal names the file and what to do: the operator reads these messages, exactly."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    path = tmp_path / "site-signing.key"
    sign.write_signing_key(path, KEY)
    with pytest.raises(KeyFileError, match=_exactly(f"{path} already exists: refusing to overwrite a key")):
        sign.write_signing_key(path, KEY)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match=_exactly(f"{path} is readable by group or others (run: chmod 600 {path})")):
        sign.read_signing_key(path)
    missing = tmp_path / "missing.key"
    with pytest.raises(KeyFileError, match=_exactly(f"cannot read signing key {missing}: FileNotFoundError")):
        sign.read_signing_key(missing)
    junk = tmp_path / "junk.key"
    junk.write_text("nope")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match=_exactly(f"{junk}: not an Ed25519 private key")):
        sign.read_signing_key(junk)
    other = tmp_path / "x25519.key"  # a valid PKCS#8 key of another algorithm
    other.write_bytes(x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    other.chmod(0o600)
    with pytest.raises(KeyFileError, match=_exactly(f"{other}: not an Ed25519 private key")):
        sign.read_signing_key(other)
    with pytest.raises(KeyFileError, match=_exactly(f"cannot read public key {missing}: FileNotFoundError")):
        sign.PublicKey.load(missing)
    latin = tmp_path / "latin1.pub"
    latin.write_bytes(b"untrusted comment: cl\xe9\n" + PUB.to_base64().encode())
    with pytest.raises(KeyFileError, match=_exactly(f"cannot read public key {latin}: UnicodeDecodeError")):
        sign.PublicKey.load(latin)


def test_a_signature_without_untrusted_comment_writes_an_empty_one() -> None:
    """The untrusted comment defaults to empty: nothing is invented in a signature file."""
    text = sign.sign_bytes(b"m", KEY, "c")
    parsed = sign.Signature.parse(text)
    bare = sign.Signature(parsed.algorithm, parsed.key_id, parsed.signature, parsed.trusted_comment,
                          parsed.global_signature)
    assert bare.to_text().split("\n")[0] == "untrusted comment: "
    assert sign.Signature.parse(bare.to_text()).untrusted_comment == ""
    assert sign.verify_bytes(b"m", bare.to_text(), PUB).trusted_comment == "c"


def test_every_verification_refusal_says_exactly_what_failed(tmp_path: Path) -> None:
    """``central open`` shows these messages to the operator (and the audit log keeps them): each
    refusal names its cause, and a malformed file is refused as malformed, before any key is used."""
    path = tmp_path / "batch"
    path.write_bytes(b"batch bytes")
    text = sign.sign_file(path, KEY, "site:A")
    lines = text.split("\n")
    refusals = {
        "signature: a .minisig file has exactly four lines": "\n".join(lines[:3]),
        "signature: missing untrusted/trusted comment line": text.replace("trusted comment: site", "comment: site"),
        "signature: bad base64": "\n".join([lines[0], lines[1][:5] + "!" + lines[1][5:], *lines[2:]]),
        "signature: not a minisign Ed25519 signature": "\n".join(
            [lines[0], base64.b64encode(base64.b64decode(lines[1]) + b"\0").decode(), *lines[2:]]),
        "signature: does not verify (file altered or wrong key)": text.replace(lines[1], sign.sign_bytes(
            b"other", KEY, "site:A").split("\n")[1]),
        "signature: trusted comment altered (global signature does not verify)": text.replace("site:A", "site:B"),
    }
    for message, bad in refusals.items():
        with pytest.raises(IntegrityError, match=_exactly(message)):
            sign.verify_file(path, bad, PUB)
    other = sign.PublicKey.of(sign.generate_signing_key())
    expected = (f"signature: made by key {sign.key_id_hex(KEY.key_id)}, "
                f"not by the expected key {sign.key_id_hex(other.key_id)}")
    with pytest.raises(IntegrityError, match=_exactly(expected)):
        sign.verify_file(path, text, other)
    with pytest.raises(IntegrityError, match=_exactly(
            "signature: legacy (Ed) signature needs the whole file: use verify_file")):
        sign.verify_digest(_legacy(b"batch bytes"), PUB, sign.file_blake2b(path))


def test_signing_refusals_say_exactly_what_is_wrong(tmp_path: Path) -> None:
    """A comment is one line of text, ``\\r`` included (minisign splits lines at it too)."""
    for comment in ("a\nb", "a\rb"):
        with pytest.raises(ValueError, match=_exactly("trusted comment must be a single line")):
            sign.sign_bytes(b"m", KEY, comment)
        with pytest.raises(ValueError, match=_exactly("untrusted comment must be a single line")):
            sign.sign_bytes(b"m", KEY, "c", untrusted_comment=comment)
    with pytest.raises(ValueError, match=_exactly("trusted comment must be valid Unicode text (no lone surrogates)")):
        sign.sign_bytes(b"m", KEY, "\udc80")
    with pytest.raises(ValueError, match=_exactly("sign_digest needs a 64-byte BLAKE2b-512 digest")):
        sign.sign_digest(bytes(32), KEY, "c")


def test_untrusted_comment_written_and_read_back() -> None:
    """The default untrusted comment names the key (as minisign's does); a given one is kept as is."""
    first = sign.sign_bytes(b"m", KEY, "c").split("\n")[0]
    assert first == f"untrusted comment: signature from sfr-gateway site key {sign.key_id_hex(KEY.key_id)}"
    text = sign.sign_bytes(b"m", KEY, "c", untrusted_comment="batch b-1 of site A")
    assert sign.Signature.parse(text).untrusted_comment == "batch b-1 of site A"


def test_a_signature_file_with_crlf_line_ends_verifies(tmp_path: Path) -> None:
    """A .minisig that went through a Windows share (CRLF) still verifies: the ``\\r`` is not part
    of the trusted comment."""
    text = sign.sign_bytes(b"m", KEY, "site:A")
    crlf = text.replace("\n", "\r\n")
    assert sign.verify_bytes(b"m", crlf, PUB).trusted_comment == "site:A"


def test_legacy_signatures_of_exactly_256_mib_are_checked_not_refused(tmp_path: Path) -> None:
    """256 MiB is the largest legacy file read (the limit is inclusive): a file of exactly that
    size is read and checked (here: a signature of another message, so it does not verify)."""
    path = tmp_path / "limit"
    with open(path, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    with pytest.raises(IntegrityError, match=_exactly("signature: does not verify (file altered or wrong key)")):
        sign.verify_file(path, _legacy(b""), PUB)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match=_exactly(
            "signature: legacy (Ed) signatures are refused for files over 256 MiB")):
        sign.verify_file(path, _legacy(b""), PUB)
