"""The site's key files: the pseudonym secret and the Ed25519 signing key.

``keys/`` (and ``keys/archive/``) is 0700 and every secret file in it 0600; any command refuses
to run otherwise. Secret files elsewhere (the transport's bearer token and TLS client key, an
age identity file) get the same refusal through ``read_secret_file``/``check_secret_file``.
Nothing here ever logs or raises with key material.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat

from ..crypto.signkey import SigningKey
from ..errors import KeyFileError
from ..home.config import HomePaths
from ..home.fsutil import atomic_write_bytes, atomic_write_text

ARCHIVE_DIR = "archive"  # keys/archive/: secrets and keys retired by a rotation
log = logging.getLogger(__name__)

SECRET_HEADER = "sfr-gateway pseudonym secret v1"  # noqa: S105 - a file-format label, not a secret
SECRET_BYTES = 32


def ensure_keys_dir(home: HomePaths) -> None:
    """Create keys/ with mode 0700 (and fix a freshly created one's mode)."""
    home.keys.mkdir(parents=True, exist_ok=True)
    os.chmod(home.keys, 0o700)


def check_key_permissions(home: HomePaths) -> None:
    """Refuse to go on when keys/, keys/archive/ or a secret key file in them is readable by group or others."""
    if not home.keys.exists():
        return
    problems = []
    folders = [home.keys, *(p for p in [home.keys / "archive"] if p.is_dir() and not p.is_symlink())]
    for folder in folders:
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            problems.append(f"{folder} (run: chmod 700 {folder})")
        for entry in sorted(folder.iterdir()):
            if entry.suffix == ".pub" or not entry.is_file():
                continue
            if stat.S_IMODE(entry.stat().st_mode) & 0o077:
                problems.append(f"{entry} (run: chmod 600 {entry})")
    if problems:
        raise KeyFileError("key files are readable by group or others; fix: " + "; ".join(problems))


def _exposed(mode: int, path: object, what: str) -> None:
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"{what} {path} is readable by group or others (run: chmod 600 {path})")


def check_secret_file(path: os.PathLike[str] | str, what: str) -> None:
    """Refuse a secret file outside keys/ (TLS client key...) readable by group or others, like the keys."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    _exposed(mode, path, what)


def read_secret_file(path: os.PathLike[str] | str, what: str) -> bytes:
    """The bytes of a secret file (bearer token, age identity...), refused like a key file when
    readable by group or others. The mode is checked on the opened file, so it is the file read."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{what} {path} is not a regular file")
            _exposed(st.st_mode, path, what)
            return fh.read()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc.__class__.__name__}") from None


def secret_fingerprint(secret: bytes) -> str:
    """A short, non-reversible fingerprint to tell secrets apart (never the secret itself)."""
    return hmac.new(secret, b"sfr-gateway/fingerprint", hashlib.sha256).hexdigest()[:16]


def encode_secret(secret: bytes) -> str:
    return f"{SECRET_HEADER}\n{secret.hex()}\n"


def decode_secret(text: str, where: str) -> bytes:
    lines = text.strip().splitlines()
    if len(lines) != 2 or lines[0] != SECRET_HEADER:
        raise KeyFileError(f"{where}: not an sfr-gateway pseudonym secret file")
    try:
        secret = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"{where}: the secret is not hexadecimal") from None
    if len(secret) != SECRET_BYTES:
        raise KeyFileError(f"{where}: the secret must be {SECRET_BYTES} bytes")
    return secret


def create_pseudonym_secret(home: HomePaths) -> bool:
    """Generate the 32-byte pseudonym secret unless one exists. True if created."""
    ensure_keys_dir(home)
    if home.pseudonym_key.exists():
        return False
    atomic_write_text(home.pseudonym_key, encode_secret(secrets.token_bytes(SECRET_BYTES)), 0o600)
    return True


def load_pseudonym_secret(home: HomePaths) -> bytes:
    """The site's pseudonym secret; KeyFileError if missing, malformed or exposed."""
    check_key_permissions(home)
    try:
        text = home.pseudonym_key.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"no pseudonym secret at {home.pseudonym_key}: run `sfr-gateway init`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {home.pseudonym_key}: {exc.__class__.__name__}") from None
    return decode_secret(text, str(home.pseudonym_key))


def create_signing_key(home: HomePaths) -> bool:
    """Generate the site's Ed25519 key (PKCS#8 PEM, 0600) and its minisign .pub unless present."""
    ensure_keys_dir(home)
    if home.signing_key.exists():
        if not home.signing_pub.exists():
            atomic_write_text(home.signing_pub, load_signing_key(home).minisign_public(), 0o644)
        return False
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(home.signing_key, pem, 0o600)
    atomic_write_text(home.signing_pub, SigningKey(key).minisign_public(), 0o644)
    return True


def load_signing_key(home: HomePaths) -> SigningKey:
    """The site's signing key; KeyFileError if missing, malformed or exposed."""
    from ..crypto.sign import read_signing_key

    check_key_permissions(home)
    if not home.signing_key.exists():
        raise KeyFileError(f"no signing key at {home.signing_key}: run `sfr-gateway init`")
    return read_signing_key(home.signing_key)


def archived_secrets(home: HomePaths) -> dict[str, bytes]:
    """Pseudonym secrets retired by ``keys rotate-pseudonym`` (keys/archive/), by fingerprint."""
    out: dict[str, bytes] = {}
    folder = home.keys / ARCHIVE_DIR
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("pseudonym-*.key")):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise KeyFileError(f"{path} is readable by group or others (run: chmod 600 {path})")
        try:
            secret = decode_secret(path.read_text(encoding="ascii"), str(path))
        except (OSError, UnicodeDecodeError, KeyFileError):
            log.warning("archived secret %s is unreadable: skipped", path.name)
            continue
        out[secret_fingerprint(secret)] = secret
    return out
