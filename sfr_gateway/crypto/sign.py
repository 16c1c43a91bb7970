"""minisign-format Ed25519 detached signatures (``.minisig``), readable by Debian ``minisign -V``.

Format facts (minisign's documentation): a signature file has four lines::

    untrusted comment: <free text, not authenticated>
    base64( "ED" || key id (8 bytes) || Ed25519(BLAKE2b-512(file)) )
    trusted comment: <one line, authenticated>
    base64( Ed25519(signature || trusted comment bytes) )    # the "global signature"

``ED`` (prehashed with BLAKE2b-512) is what current minisign writes and what we write, so a file
is hashed in one streaming pass; ``Ed`` (the legacy algorithm, signature over the whole file, up
to 256 MiB read into memory) is accepted by ``verify_file``/``verify_bytes`` for interoperability
with ``minisign -l``, but never by ``central open``, which takes batches from the network.
A public key file is ``untrusted comment: ...`` then
``base64("Ed" || key id || public key)``; the key id is shown as the hex of its bytes reversed.

The site's private key is stored as unencrypted PKCS#8 PEM, 0600 (``sfr_gateway.keys.files`` manages
``HOME/keys/site-signing.key``; ``write_signing_key``/``read_signing_key`` do the same for any
path). minisign's own scrypt-encrypted secret-key format is deliberately not used: only the
PUBLIC key file and the signatures need to be minisign-compatible.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import IntegrityError, KeyFileError
from .signkey import SigningKey, key_id_for, minisign_public_text

ALG_PREHASHED = b"ED"
ALG_LEGACY = b"Ed"
KEY_ALG = b"Ed"
READ_BLOCK = 1024 * 1024
MAX_LEGACY_BYTES = 256 * 1024 * 1024


def _b64(data: str) -> bytes:
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def key_id_hex(key_id: bytes) -> str:
    """The key id as minisign prints it (bytes reversed, upper-case hex)."""
    return key_id[::-1].hex().upper()


@dataclass(frozen=True)
class PublicKey:
    """A minisign Ed25519 public key: its key id and the 32-byte key."""

    key_id: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse a minisign public-key file's text or the bare base64 key (``minisign -P``)."""
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if lines and lines[0].startswith("untrusted comment:"):
            lines = lines[1:]
        if len(lines) != 1:
            raise KeyFileError("not a minisign public key (expected one base64 line)")
        try:
            blob = _b64(lines[0])
        except ValueError:
            raise KeyFileError("not a minisign public key (bad base64)") from None
        if len(blob) != 42 or blob[:2] != KEY_ALG:
            raise KeyFileError("not a minisign Ed25519 public key")
        return cls(blob[2:10], blob[10:])

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        """Read a public-key file; KeyFileError if missing or malformed."""
        try:
            return cls.parse(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read public key {path}: {exc.__class__.__name__}") from None

    @classmethod
    def of(cls, key: SigningKey) -> PublicKey:
        """The public half of the site's signing key."""
        return cls(key.key_id, key.public_bytes)

    def to_base64(self) -> str:
        return base64.b64encode(KEY_ALG + self.key_id + self.key).decode("ascii")

    def file_text(self) -> str:
        """The minisign public-key file (two lines)."""
        return f"untrusted comment: minisign public key {key_id_hex(self.key_id)}\n{self.to_base64()}\n"


def generate_signing_key() -> SigningKey:
    """A fresh site signing key (in memory; ``keys.create_signing_key`` writes HOME's)."""
    return SigningKey(Ed25519PrivateKey.generate())


def write_signing_key(path: Path, key: SigningKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM (the format of ``HOME/keys/site-signing.key``).

    Mode 0600; an existing file is never overwritten (KeyFileError).
    """
    pem = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def read_signing_key(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 key; KeyFileError if missing, exposed (group/other) or malformed."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            raise KeyFileError(f"{path} is readable by group or others (run: chmod 600 {path})")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc.__class__.__name__}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an Ed25519 private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return SigningKey(private)


def public_key_file_text(key: SigningKey) -> str:
    """The minisign public-key file of ``key`` (what ``HOME/keys/site-signing.pub`` holds)."""
    return minisign_public_text(key.public_bytes)


@dataclass(frozen=True)
class Signature:
    """A parsed ``.minisig`` file."""

    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes
    untrusted_comment: str = ""

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Parse a ``.minisig`` text; IntegrityError when malformed."""
        lines = text.split("\n")  # minisign's line separator only: a comment may hold U+2028 etc.
        if lines and lines[-1] == "":
            lines.pop()
        lines = [ln.removesuffix("\r") for ln in lines]
        if len(lines) != 4:
            raise IntegrityError("signature: a .minisig file has exactly four lines")
        if not lines[0].startswith("untrusted comment:") or not lines[2].startswith("trusted comment: "):
            raise IntegrityError("signature: missing untrusted/trusted comment line")
        try:
            blob = _b64(lines[1])
            global_sig = _b64(lines[3])
        except ValueError:
            raise IntegrityError("signature: bad base64") from None
        if len(blob) != 74 or blob[:2] not in (ALG_PREHASHED, ALG_LEGACY) or len(global_sig) != 64:
            raise IntegrityError("signature: not a minisign Ed25519 signature")
        return cls(
            algorithm=blob[:2],
            key_id=blob[2:10],
            signature=blob[10:],
            trusted_comment=lines[2][len("trusted comment: ") :],
            global_signature=global_sig,
            untrusted_comment=lines[0][len("untrusted comment:") :].strip(),
        )

    def to_text(self) -> str:
        blob = base64.b64encode(self.algorithm + self.key_id + self.signature).decode("ascii")
        glob = base64.b64encode(self.global_signature).decode("ascii")
        return (
            f"untrusted comment: {self.untrusted_comment}\n{blob}\n"
            f"trusted comment: {self.trusted_comment}\n{glob}\n"
        )


def _check_comment(comment: str, what: str) -> None:
    if "\n" in comment or "\r" in comment:
        raise ValueError(f"{what} must be a single line")
    try:
        comment.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None


def file_blake2b(path: Path) -> bytes:
    """BLAKE2b-512 of a file, read in 1 MiB blocks (what ``ED`` signatures sign)."""
    digest = hashlib.blake2b(digest_size=64)
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            digest.update(block)
    return digest.digest()


def sign_digest(
    blake2b_512: bytes, key: SigningKey, trusted_comment: str, untrusted_comment: str | None = None
) -> str:
    """The ``.minisig`` text for a file whose BLAKE2b-512 digest is ``blake2b_512``."""
    if len(blake2b_512) != 64:
        raise ValueError("sign_digest needs a 64-byte BLAKE2b-512 digest")
    _check_comment(trusted_comment, "trusted comment")
    untrusted = untrusted_comment or f"signature from sfr-gateway site key {key_id_hex(key.key_id)}"
    _check_comment(untrusted, "untrusted comment")
    signature = key.private.sign(blake2b_512)
    global_sig = key.private.sign(signature + trusted_comment.encode("utf-8"))
    return Signature(ALG_PREHASHED, key.key_id, signature, trusted_comment, global_sig, untrusted).to_text()


def sign_file(path: Path, key: SigningKey, trusted_comment: str, untrusted_comment: str | None = None) -> str:
    """Sign ``path`` (streamed once) and return the ``.minisig`` text."""
    return sign_digest(file_blake2b(path), key, trusted_comment, untrusted_comment)


def sign_bytes(data: bytes, key: SigningKey, trusted_comment: str, untrusted_comment: str | None = None) -> str:
    """The ``.minisig`` text for an in-memory message (e.g. a withdrawal request)."""
    return sign_digest(hashlib.blake2b(data, digest_size=64).digest(), key, trusted_comment, untrusted_comment)


def verify_bytes(data: bytes, sig: Signature | str, public: PublicKey) -> Signature:
    """Verify an in-memory message against a ``.minisig`` (``ED`` or legacy ``Ed``)."""
    if isinstance(sig, str):
        sig = Signature.parse(sig)
    if sig.algorithm == ALG_PREHASHED:
        return _verify(sig, public, hashlib.blake2b(data, digest_size=64).digest())
    return _verify(sig, public, data)


def verify_digest(sig: Signature | str, public: PublicKey, blake2b_512: bytes) -> Signature:
    """Verify a prehashed (``ED``) signature against a file's BLAKE2b-512 digest."""
    if isinstance(sig, str):
        sig = Signature.parse(sig)
    if sig.algorithm != ALG_PREHASHED:
        raise IntegrityError("signature: legacy (Ed) signature needs the whole file: use verify_file")
    return _verify(sig, public, blake2b_512)


def verify_file(path: Path, sig: Signature | str, public: PublicKey) -> Signature:
    """Verify ``path`` against a ``.minisig`` (``ED``, or legacy ``Ed`` up to 256 MiB).

    Returns the parsed signature (read its ``trusted_comment``); raises IntegrityError.
    """
    if isinstance(sig, str):
        sig = Signature.parse(sig)
    if sig.algorithm == ALG_PREHASHED:
        return _verify(sig, public, file_blake2b(path))
    if Path(path).stat().st_size > MAX_LEGACY_BYTES:
        raise IntegrityError("signature: legacy (Ed) signatures are refused for files over 256 MiB")
    return _verify(sig, public, Path(path).read_bytes())


def _verify(sig: Signature, public: PublicKey, message: bytes) -> Signature:
    if sig.key_id != public.key_id:
        raise IntegrityError(
            f"signature: made by key {key_id_hex(sig.key_id)}, not by the expected key {key_id_hex(public.key_id)}"
        )
    pk = Ed25519PublicKey.from_public_bytes(public.key)
    try:
        pk.verify(sig.signature, message)
    except InvalidSignature:
        raise IntegrityError("signature: does not verify (file altered or wrong key)") from None
    try:
        pk.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode("utf-8"))
    except InvalidSignature:
        raise IntegrityError("signature: trusted comment altered (global signature does not verify)") from None
    return sig


def parse_trusted_comment(comment: str) -> dict[str, str]:
    """``key:value`` fields separated by tabs (minisign's convention) as a dict."""
    fields: dict[str, str] = {}
    for part in comment.split("\t"):
        name, sep, value = part.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


__all__ = [
    "PublicKey",
    "Signature",
    "SigningKey",
    "file_blake2b",
    "generate_signing_key",
    "key_id_for",
    "key_id_hex",
    "parse_trusted_comment",
    "public_key_file_text",
    "read_signing_key",
    "sign_bytes",
    "sign_digest",
    "sign_file",
    "verify_bytes",
    "verify_digest",
    "verify_file",
    "write_signing_key",
]
