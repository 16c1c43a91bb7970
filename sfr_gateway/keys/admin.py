"""Key administration: show, escrow and restore the pseudonym secret, rotate the keys.

- ``show``: the site's minisign public key file (``keys/site-signing.pub``) and fingerprints.
- ``escrow``: the pseudonym secret file, age-encrypted to a custodian's key, for safe keeping
  off the machine (the mapping itself needs no escrow: it is regenerated from the secret).
- ``restore``: back into a (new) HOME's keys/, never over a different existing secret.
- ``rotate_signing``: a new Ed25519 site key; a statement announcing its public key, signed by
  the OLD key (minisign format), is left in the outbox for the transport; the old key is
  archived (0600) in ``keys/archive/``.
- ``rotate_pseudonym``: a new pseudonym secret; linkage with everything released breaks, so
  it needs an explicit acknowledgement; the old secret is archived and the rotation recorded.

Every action is recorded in the events table (fingerprints only, never key material).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto.age import Recipient, decrypt_bytes, encrypt_bytes, parse_identities
from ..crypto.sign import PublicKey, generate_signing_key, key_id_hex, sign_file
from ..errors import KeyFileError
from ..home.config import HomePaths
from ..home.fsutil import atomic_write_bytes, atomic_write_text
from ..ledger import open_ledger
from .files import (
    ARCHIVE_DIR,
    SECRET_BYTES,
    SigningKey,
    check_key_permissions,
    decode_secret,
    encode_secret,
    ensure_keys_dir,
    load_pseudonym_secret,
    load_signing_key,
    read_secret_file,
    secret_fingerprint,
)

ROTATION_STATEMENT = "sfr-gateway/signing-key-rotation/1"


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _archive_dir(home: HomePaths) -> Path:
    folder = home.keys / ARCHIVE_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _event(home: HomePaths, command: str, action: str, result: str, detail: dict[str, Any]) -> None:
    with open_ledger(home.state_db) as ledger:
        ledger.record_event(command, action, result, detail)


# --------------------------------------------------------------------------- show


def show(home: HomePaths) -> dict[str, str]:
    """Public facts: the minisign public-key file text, its key id, the secret's fingerprint."""
    check_key_permissions(home)
    signing = load_signing_key(home)
    try:
        pub_text = home.signing_pub.read_text(encoding="ascii")
    except FileNotFoundError:
        pub_text = PublicKey.of(signing).file_text()
        atomic_write_text(home.signing_pub, pub_text, 0o644)
    public = PublicKey.parse(pub_text)
    if public.key != signing.public_bytes:
        raise KeyFileError(f"{home.signing_pub} does not match {home.signing_key}: remove the .pub and re-run")
    out = {"signing_public_key": pub_text, "signing_key_id": key_id_hex(public.key_id),
           "signing_public_key_file": str(home.signing_pub)}
    if home.pseudonym_key.exists():
        out["pseudonym_secret_fingerprint"] = secret_fingerprint(load_pseudonym_secret(home))
    return out


# --------------------------------------------------------------------------- escrow / restore


def escrow(home: HomePaths, recipient: str, output: Path | None = None) -> tuple[Path, str]:
    """Encrypt the pseudonym secret file to ``recipient`` (age); returns (file, fingerprint)."""
    secret = load_pseudonym_secret(home)
    rcpt = Recipient.parse(recipient)
    fp = secret_fingerprint(secret)
    out = Path(output) if output else Path.cwd() / f"pseudonym-secret-{fp}.age"
    atomic_write_bytes(out, encrypt_bytes(encode_secret(secret).encode("ascii"), [rcpt]), 0o600)
    _event(home, "keys escrow", "escrow", "ok", {"fingerprint": fp, "recipient": str(rcpt), "output": str(out)})
    return out, fp


def restore(home: HomePaths, escrow_file: Path, identity_file: Path) -> tuple[str, bool]:
    """Decrypt an escrow file into HOME's keys/pseudonym.key. Returns (fingerprint, written).

    An identical secret already in place is fine (nothing written); a different one is refused.
    """
    identity_text = read_secret_file(identity_file, "identity file")  # a custodian's secret: 0600 like a key
    try:
        identities = parse_identities(identity_text.decode("utf-8"))
        data = Path(escrow_file).read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the escrow or identity file: {exc.__class__.__name__}") from None
    secret = decode_secret(decrypt_bytes(data, identities).decode("ascii", "replace"), str(escrow_file))
    fp = secret_fingerprint(secret)
    ensure_keys_dir(home)
    check_key_permissions(home)
    if home.pseudonym_key.exists():
        current = load_pseudonym_secret(home)
        if current != secret:
            _event(home, "keys restore", "restore", "refused", {"fingerprint": fp,
                                                                "existing": secret_fingerprint(current)})
            raise KeyFileError(
                f"{home.pseudonym_key} holds a different secret ({secret_fingerprint(current)}, "
                f"escrow holds {fp}): refusing to overwrite; restore into a new HOME")
        _event(home, "keys restore", "restore", "ok", {"fingerprint": fp, "written": False})
        return fp, False
    try:
        fd = os.open(home.pseudonym_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{home.pseudonym_key} appeared meanwhile: refusing to overwrite") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(encode_secret(secret))
        fh.flush()
        os.fsync(fh.fileno())
    _event(home, "keys restore", "restore", "ok", {"fingerprint": fp, "written": True})
    return fp, True


# --------------------------------------------------------------------------- rotations


@dataclass(frozen=True)
class SigningRotation:
    old_key_id: str
    new_key_id: str
    statement: Path
    signature: Path
    archived: Path


def rotation_statement(site_id: str, old: SigningKey, new: SigningKey, when: str) -> bytes:
    """Canonical JSON announcing ``new`` (to be signed by ``old``)."""
    doc = {
        "type": ROTATION_STATEMENT, "site": site_id, "created": when,
        "old_key_id": key_id_hex(old.key_id), "old_public_key": PublicKey.of(old).to_base64(),
        "new_key_id": key_id_hex(new.key_id), "new_public_key": PublicKey.of(new).to_base64(),
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def rotate_signing(home: HomePaths, site_id: str) -> SigningRotation:
    """Replace the site signing key; announce the new public key in a statement signed by the old."""
    old = load_signing_key(home)
    new = generate_signing_key()
    stamp = _stamp()
    old_id, new_id = key_id_hex(old.key_id), key_id_hex(new.key_id)
    home.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
    statement = home.outbox / f"signing-key-rotation-{stamp}-{new_id}.json"
    atomic_write_bytes(statement, rotation_statement(site_id, old, new, stamp), 0o644)
    comment = f"type:signing-key-rotation\tsite:{site_id}\told_key:{old_id}\tnew_key:{new_id}"
    sig = statement.with_name(statement.name + ".minisig")
    atomic_write_text(sig, sign_file(statement, old, comment), 0o644)
    archive = _archive_dir(home)
    archived = archive / f"site-signing-{old_id}-{stamp}.key"
    atomic_write_bytes(archived, home.signing_key.read_bytes(), 0o600)
    atomic_write_text(archive / f"site-signing-{old_id}-{stamp}.pub", PublicKey.of(old).file_text(), 0o644)
    from cryptography.hazmat.primitives import serialization

    pem = new.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    atomic_write_bytes(home.signing_key, pem, 0o600)
    atomic_write_text(home.signing_pub, PublicKey.of(new).file_text(), 0o644)
    _event(home, "keys rotate-signing", "rotate-signing", "ok", {
        "old_key_id": old_id, "new_key_id": new_id, "statement": statement.name})
    return SigningRotation(old_id, new_id, statement, sig, archived)


def rotate_pseudonym(home: HomePaths, *, acknowledged: bool) -> tuple[str, str, Path]:
    """Replace the pseudonym secret (only when ``acknowledged``). Returns (old fp, new fp, archive)."""
    old = load_pseudonym_secret(home)
    old_fp = secret_fingerprint(old)
    if not acknowledged:
        _event(home, "keys rotate-pseudonym", "rotate-pseudonym", "refused", {"old_fingerprint": old_fp})
        raise KeyFileError(
            "rotating the pseudonym secret breaks the linkage of every future release with everything "
            "already sent (new pseudonyms, UIDs and date offsets): re-run with --i-understand-linkage-breaks")
    new = secrets.token_bytes(SECRET_BYTES)
    new_fp = secret_fingerprint(new)
    archived = _archive_dir(home) / f"pseudonym-{old_fp}-{_stamp()}.key"
    atomic_write_text(archived, encode_secret(old), 0o600)
    atomic_write_text(home.pseudonym_key, encode_secret(new), 0o600)
    _event(home, "keys rotate-pseudonym", "rotate-pseudonym", "ok",
           {"old_fingerprint": old_fp, "new_fingerprint": new_fp, "archived": archived.name})
    return old_fp, new_fp, archived
