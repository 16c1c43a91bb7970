"""The central host's side: make an age identity, and open a site's signed, encrypted batch.

``open_batch`` trusts nothing until it is checked, in this order: the minisign signature by the
site's key (and the SHA-256 named in its trusted comment), then the age decryption (every chunk
authenticated), then the tar stream against the manifest (every file's size and SHA-256, no
missing or extra file, no unsafe name, regular files only), and the ciphertext read while
decrypting is the one that was verified. Files are written into a hidden temporary folder beside
the destination, which is renamed to ``OUTPUT/<batch id>`` only when everything verified; on any
failure nothing is left behind. Every failure is an IntegrityError (exit code 12).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from .crypto.age import Decryptor, Identity, identity_file_text, parse_identities
from .crypto.sign import (
    PublicKey,
    Signature,
    file_blake2b,
    parse_trusted_comment,
    verify_digest,
    verify_file,
)
from .errors import InputError, IntegrityError, KeyFileError
from .fsutil import fsync_dir
from .keys import read_secret_file
from .package import (
    FORMAT,
    MANIFEST_NAME,
    PAYLOAD,
    check_batch_id,
    check_member_name,
    signature_path,
)

log = logging.getLogger(__name__)

READ_BLOCK = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OpenedBatch:
    """A batch that verified and was unpacked."""

    batch_id: str
    site: str
    directory: Path
    files: int
    bytes: int
    sha256: str
    manifest: dict[str, Any]


def keygen(output: Path | None = None) -> tuple[Identity, str]:
    """A new age identity; written to ``output`` (0600, never overwritten) when given.

    Returns the identity and the identity-file text.
    """
    identity = Identity.generate()
    text = identity_file_text(identity, dt.datetime.now(dt.UTC))
    if output is not None:
        output = Path(output)
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{output} already exists: refusing to overwrite a key") from None
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return identity, text


def load_identities(path: Path) -> list[Identity]:
    """Identities from an age identity file (ours or age-keygen's); refused, like a key, when
    group or others can read it (KeyFileError, exit 4)."""
    try:
        return parse_identities(read_secret_file(path, "identity file").decode("ascii"))
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"cannot read identity file {path}: {exc.__class__.__name__}") from None


def load_site_key(value: str) -> PublicKey:
    """The site's minisign public key: a path to its .pub file, or the base64 key itself."""
    path = Path(value)
    if path.is_file():
        return PublicKey.load(path)
    return PublicKey.parse(value)


class _HashingReader:
    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.sha.update(data)
        return data


def _hash_file(path: Path) -> tuple[str, bytes]:
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=64)
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            sha.update(block)
            blake.update(block)
    return sha.hexdigest(), blake.digest()


def _check_manifest(manifest: Any, batch_id: str, site: str) -> dict[str, dict[str, Any]]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"manifest: not a {FORMAT} manifest")
    if manifest.get("payload") != PAYLOAD:
        raise IntegrityError(f"manifest: unsupported payload {manifest.get('payload')!r}")
    if manifest.get("batch_id") != batch_id or manifest.get("site") != site:
        raise IntegrityError("manifest: site or batch id differs from the signed trusted comment")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise IntegrityError("manifest: no file list")
    expected: dict[str, dict[str, Any]] = {}
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise IntegrityError("manifest: malformed file entry")
        name = entry["name"]
        try:
            check_member_name(name)
        except ValueError:
            raise IntegrityError(f"manifest: unsafe file name {name!r}") from None
        size, sha = entry.get("size"), entry.get("sha256")
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or len(sha) != 64:
            raise IntegrityError(f"manifest: bad size or sha256 for {name!r}")
        if name in expected or name == MANIFEST_NAME:
            raise IntegrityError(f"manifest: duplicate file name {name!r}")
        expected[name] = entry
    dirs = {"/".join(n.split("/")[:i]) for n in expected for i in range(1, n.count("/") + 1)}
    if dirs & set(expected):
        raise IntegrityError("manifest: a file name is also used as a folder")
    counts = manifest.get("counts", {})
    if not isinstance(counts, dict):
        raise IntegrityError("manifest: malformed counts")
    if counts.get("files") != len(expected) or counts.get("bytes") != sum(e["size"] for e in expected.values()):
        raise IntegrityError("manifest: counts disagree with the file list")
    return expected


def _unpack(stream: Any, batch_id: str, site: str, dest: Path) -> tuple[dict[str, Any], int, int]:
    """Read the tar stream into ``dest``; return (manifest, files, bytes)."""
    tf = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - a stream: nothing to close but the source
    first = tf.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg() or first.size > MAX_MANIFEST_BYTES:
        raise IntegrityError("batch: the first member is not manifest.json")
    mf = tf.extractfile(first)
    if mf is None:
        raise IntegrityError("batch: manifest.json is not a regular file")
    raw = mf.read()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError("manifest: not valid JSON") from None
    expected = _check_manifest(manifest, batch_id, site)
    (dest / MANIFEST_NAME).write_bytes(raw)
    seen: set[str] = set()
    total = 0
    while (member := tf.next()) is not None:
        name = member.name
        if name not in expected:
            raise IntegrityError(f"batch: file {name!r} is not in the manifest")
        if name in seen:
            raise IntegrityError(f"batch: file {name!r} appears twice")
        if not member.isreg():
            raise IntegrityError(f"batch: {name!r} is not a regular file")
        entry = expected[name]
        if member.size != entry["size"]:
            raise IntegrityError(f"batch: {name!r} has size {member.size}, manifest says {entry['size']}")
        seen.add(name)
        target = dest.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tf.extractfile(member)
        if src is None:
            raise IntegrityError(f"batch: {member.name} is not a regular file")
        sha = hashlib.sha256()
        with open(target, "xb") as out:
            while block := src.read(READ_BLOCK):
                sha.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if sha.hexdigest() != entry["sha256"]:
            raise IntegrityError(f"batch: {name!r} does not match its SHA-256 in the manifest")
        total += member.size
    missing = sorted(set(expected) - seen)
    if missing:
        raise IntegrityError(f"batch: {len(missing)} file(s) of the manifest are missing, e.g. {missing[0]!r}")
    while block := stream.read(READ_BLOCK):  # rest of the tar: only zero padding is allowed
        if block.count(0) != len(block):
            raise IntegrityError("batch: data after the end of the tar archive")
    return manifest, len(seen), total


def open_batch(
    batch: Path,
    identities: Sequence[Identity],
    site_key: PublicKey,
    output: Path,
    *,
    signature: Path | None = None,
) -> OpenedBatch:
    """Verify, decrypt, check and unpack ``batch`` into ``output/<batch id>``.

    The signature is ``<batch>.minisig`` unless ``signature`` is given.
    """
    batch = Path(batch)
    sig_file = Path(signature) if signature else signature_path(batch)
    if not batch.is_file():
        raise InputError(f"no batch file at {batch}")
    try:
        sig = Signature.parse(sig_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"no signature beside the batch ({sig_file.name}): refusing to open it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"cannot read signature {sig_file}: {exc.__class__.__name__}") from None

    sha_hex, blake = _hash_file(batch)
    if sig.algorithm == b"ED":
        verify_digest(sig, site_key, blake)
    else:
        verify_file(batch, sig, site_key)
    fields = parse_trusted_comment(sig.trusted_comment)
    if fields.get("sha256") != sha_hex:
        raise IntegrityError("signature: the trusted comment names another SHA-256 than this file's")
    batch_id, site = fields.get("batch", ""), fields.get("site", "")
    try:
        check_batch_id(batch_id)
    except ValueError:
        raise IntegrityError("signature: the trusted comment has no valid batch id") from None

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    final = output / batch_id
    if final.exists():
        raise InputError(f"{final} already exists: refusing to overwrite an opened batch")
    work = Path(tempfile.mkdtemp(prefix=f".{batch_id}.", suffix=".part", dir=output))
    try:
        with open(batch, "rb") as fh:
            reader = _HashingReader(fh)
            decrypted = Decryptor(reader, identities)
            dctx = zstandard.ZstdDecompressor()
            stream = dctx.stream_reader(decrypted, read_across_frames=True, closefd=False)  # type: ignore[arg-type]
            try:
                manifest, count, total = _unpack(stream, batch_id, site, work)
            except zstandard.ZstdError:
                raise IntegrityError("batch: the payload is not a valid zstd stream") from None
            except tarfile.TarError as exc:
                raise IntegrityError(f"batch: the payload is not a valid tar stream ({exc.__class__.__name__})") from None
            if reader.sha.hexdigest() != sha_hex:
                raise IntegrityError("batch: the file changed between signature check and decryption")
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    fsync_dir(output)
    log.info("opened batch %s from site %s: %d files", batch_id, site, count)
    return OpenedBatch(batch_id, site, final, count, total, sha_hex, manifest)


__all__ = ["OpenedBatch", "file_blake2b", "keygen", "load_identities", "load_site_key", "open_batch"]
