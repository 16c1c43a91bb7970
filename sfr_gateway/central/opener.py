"""Open a site's signed, encrypted batch: verify, decrypt, check the manifest, unpack (or refuse).

Nothing is trusted before it is checked, in this order:

1. The ``.minisig``: a prehashed ``ED`` signature (legacy ``Ed`` is refused: the gateway never
   writes it, and it would need the whole file in memory), made by a key the site registry
   holds for the site its trusted comment names. A key registered for site A never opens a
   batch that claims site B.
2. The batch is copied ONCE into a private temporary file (0600, inside a 0700 folder) while
   both its SHA-256 and its BLAKE2b-512 are computed; the signature is verified against that
   digest, the trusted comment's ``sha256`` against the copy's and its ``file`` against the
   batch's name. Everything after reads the copy: a file swapped after the check is never
   decrypted (anyone holding the central public key can make a valid age file).
3. age decryption (every 64 KiB chunk authenticated), zstd, then a strict tar reader
   (``tarread``: regular files only, bounded headers) against the manifest: site and batch
   as signed, every file's size and SHA-256, no missing or extra file, no unsafe name; every
   image the site re-encoded (``pixel_sha256`` in its entry) decoded and its pixels compared
   with the digest the site took before encoding (``pixelcheck``).
4. Limits (``home.OpenLimits``, CENTRAL_HOME/config.toml ``[open]``) on the files and bytes the
   manifest declares and on their ratio to the batch's size, and a free-space check, before a
   single file is written; the decompressed stream may not exceed what the manifest declares.

Files are written into a hidden temporary folder beside the destination, renamed to
``OUTPUT/<batch id>`` only when everything verified; on any failure nothing is left behind.
Every malformed batch is an IntegrityError (exit 12); no space is a StorageError (exit 16).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from ..batch.names import FORMAT, MANIFEST_NAME, PAYLOAD, check_batch_id, check_member_name, signature_path
from ..crypto.age import Decryptor, Identity
from ..crypto.sign import ALG_PREHASHED, PublicKey, Signature, key_id_hex, parse_trusted_comment, verify_digest
from ..errors import InputError, IntegrityError, StorageError, from_exception
from ..home.fsutil import fsync_dir
from .home import OpenLimits
from .pixelcheck import check_entry, check_pixels
from .sites import SiteRegistry
from .tarread import BLOCK, MAX_EXTENDED_HEADER, TarReader

log = logging.getLogger(__name__)

READ_BLOCK = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
RATIO_FLOOR = 16 * 1024 * 1024  # below this many unpacked bytes the ratio limit does not apply
MEMBER_OVERHEAD = 3 * BLOCK + 2048  # header, padding and a PAX path record per member, generously
MAX_WINDOW = 1 << 27  # zstd window (memory) bound: 128 MiB, zstd's own default limit, stated
# errno values of a name this file system cannot create: the batch's fault, not the disk's
_BAD_NAME = {errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}


@dataclass(frozen=True)
class OpenedBatch:
    """A batch that verified and was unpacked."""

    batch_id: str
    site: str
    key_id: str
    directory: Path
    files: int
    bytes: int
    sha256: str
    manifest: dict[str, Any]


def as_registry(sites: SiteRegistry | Mapping[str, PublicKey | Sequence[PublicKey]]) -> SiteRegistry:
    if isinstance(sites, SiteRegistry):
        return sites
    if isinstance(sites, PublicKey):
        raise TypeError("open_batch needs the registered keys by site ({site: key} or a SiteRegistry), "
                        "not a bare key: the site a batch claims must be the key's")
    return SiteRegistry.of(sites)


def read_signature(sig_file: Path) -> Signature:
    try:
        with open(sig_file, "rb") as fh:
            raw = fh.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise IntegrityError(f"no signature beside the batch ({sig_file.name}): refusing to open it") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read signature {sig_file}: {exc.__class__.__name__}") from None
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise IntegrityError("signature: not a .minisig file (too large)")
    try:
        return Signature.parse(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise IntegrityError("signature: not UTF-8 text") from None


def site_key(sig: Signature, site: str, registry: SiteRegistry) -> PublicKey:
    """The registered key of ``site`` that made ``sig``; IntegrityError naming what is wrong."""
    keys = registry.keys_for(site)
    if not keys:
        raise IntegrityError(f"signature: site {site!r} is not registered on this host "
                             "(`sfr-gateway central site add SITE PUBKEY`)")
    for key in keys:
        if key.key_id == sig.key_id:
            return key
    other = registry.site_of(sig.key_id)
    if other is not None:
        raise IntegrityError(f"signature: made with the key of site {other} ({key_id_hex(sig.key_id)}) but the batch "
                             f"claims site {site}: refused")
    raise IntegrityError(f"signature: made by key {key_id_hex(sig.key_id)}, not by a key registered for site {site} "
                         f"({', '.join(key_id_hex(k.key_id) for k in keys)})")


def _free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError as exc:
        raise from_exception(exc) from None


def _need_space(path: Path, needed: int, limits: OpenLimits, what: str) -> None:
    free = _free(path)
    if needed + limits.reserve_bytes > free:
        raise StorageError(f"{path}: {what} needs {needed} bytes and [open] reserve_bytes keeps {limits.reserve_bytes} "
                           f"free, but only {free} are free: nothing was unpacked")


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[str, bytes, int]:
    """Copy ``src`` to ``dst`` once; return its SHA-256 (hex), BLAKE2b-512 and size."""
    sha, blake, size = hashlib.sha256(), hashlib.blake2b(digest_size=64), 0
    while block := src.read(READ_BLOCK):
        sha.update(block)
        blake.update(block)
        dst.write(block)
        size += len(block)
    dst.flush()
    return sha.hexdigest(), blake.digest(), size


class _Capped:
    """A read stream that refuses to yield more than ``cap`` bytes in all (a decompression bomb)."""

    def __init__(self, src: Any, cap: int) -> None:
        self._src = src
        self.cap = cap
        self.total = 0

    def read(self, n: int) -> bytes:
        data: bytes = self._src.read(min(n, self.cap - self.total + 1))
        self.total += len(data)
        if self.total > self.cap:
            raise IntegrityError("batch: the payload unpacks to more than its manifest declares")
        return data


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
        if (isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(sha, str)
                or len(sha) != 64):
            raise IntegrityError(f"manifest: bad size or sha256 for {name!r}")
        if name in expected or name == MANIFEST_NAME:
            raise IntegrityError(f"manifest: duplicate file name {name!r}")
        check_entry(name, entry)
        expected[name] = entry
    dirs = {"/".join(n.split("/")[:i]) for n in expected for i in range(1, n.count("/") + 1)}
    if dirs & set(expected) or MANIFEST_NAME in dirs:
        raise IntegrityError("manifest: a file name is also used as a folder")
    counts = manifest.get("counts", {})
    if not isinstance(counts, dict):
        raise IntegrityError("manifest: malformed counts")
    if counts.get("files") != len(expected) or counts.get("bytes") != sum(e["size"] for e in expected.values()):
        raise IntegrityError("manifest: counts disagree with the file list")
    return expected


def _check_limits(files: int, total: int, batch_size: int, limits: OpenLimits) -> None:
    if files > limits.max_files:
        raise IntegrityError(f"manifest: {files} files, more than [open] max_files = {limits.max_files}: refused")
    if total > limits.max_unpacked_bytes:
        raise IntegrityError(f"manifest: the batch unpacks to {total} bytes, more than [open] max_unpacked_bytes = "
                             f"{limits.max_unpacked_bytes}: refused")
    if total > RATIO_FLOOR and total > limits.max_ratio * batch_size:
        raise IntegrityError(f"manifest: {total} bytes from a {batch_size}-byte batch, more than [open] max_ratio = "
                             f"{limits.max_ratio} times its size (a decompression bomb?): refused")


def _write_member(tar: TarReader, dest: Path, name: str, entry: dict[str, Any]) -> None:
    target = dest.joinpath(*name.split("/"))
    sha = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            while block := tar.read_data(READ_BLOCK):
                sha.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in _BAD_NAME:
            raise IntegrityError(f"batch: {name!r} cannot be created here ({errno.errorcode.get(exc.errno or 0)}: "
                                 "a name clash or a name this file system refuses)") from None
        raise from_exception(exc) from None
    if sha.hexdigest() != entry["sha256"]:
        raise IntegrityError(f"batch: {name!r} does not match its SHA-256 in the manifest")


def _unpack(stream: Any, batch_id: str, site: str, dest: Path, batch_size: int,
            limits: OpenLimits) -> tuple[dict[str, Any], int, int]:
    """Read the tar stream into ``dest``; return (manifest, files, bytes)."""
    capped = _Capped(stream, MAX_MANIFEST_BYTES + MAX_EXTENDED_HEADER + 4 * BLOCK)
    tar = TarReader(capped.read)
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME:
        raise IntegrityError("batch: the first member is not manifest.json")
    if first.size > MAX_MANIFEST_BYTES:  # refused before a byte of it is read into memory
        raise IntegrityError(f"batch: manifest.json is {first.size} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
    raw = tar.read_data(first.size)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntegrityError("manifest: not valid JSON") from None
    expected = _check_manifest(manifest, batch_id, site)
    declared = sum(e["size"] for e in expected.values())
    _check_limits(len(expected), declared, batch_size, limits)
    _need_space(dest, declared + len(raw), limits, f"batch {batch_id}")
    capped.cap = capped.total + declared + (len(expected) + 1) * MEMBER_OVERHEAD + 64 * 1024
    try:
        (dest / MANIFEST_NAME).write_bytes(raw)
    except OSError as exc:
        raise from_exception(exc) from None
    seen: set[str] = set()
    total = 0
    while (member := tar.next()) is not None:
        name = member.name
        if name not in expected:
            raise IntegrityError(f"batch: file {name!r} is not in the manifest")
        if name in seen:
            raise IntegrityError(f"batch: file {name!r} appears twice")
        entry = expected[name]
        if member.size != entry["size"]:
            raise IntegrityError(f"batch: {name!r} has size {member.size}, manifest says {entry['size']}")
        seen.add(name)
        _write_member(tar, dest, name, entry)
        check_pixels(dest.joinpath(*name.split("/")), name, entry)  # re-encoded images: decoded pixels as the site's
        total += member.size
    missing = sorted(set(expected) - seen)
    if missing:
        raise IntegrityError(f"batch: {len(missing)} file(s) of the manifest are missing, e.g. {missing[0]!r}")
    while block := capped.read(READ_BLOCK):  # rest of the tar: only zero padding is allowed
        if block.count(0) != len(block):
            raise IntegrityError("batch: data after the end of the tar archive")
    return manifest, len(seen), total


def open_batch(
    batch: Path,
    identities: Sequence[Identity],
    sites: SiteRegistry | Mapping[str, PublicKey | Sequence[PublicKey]],
    output: Path,
    *,
    signature: Path | None = None,
    limits: OpenLimits | None = None,
) -> OpenedBatch:
    """Verify, decrypt, check and unpack ``batch`` into ``output/<batch id>``.

    ``sites``: the registry (or ``{site: key}``); the signature must be by a key registered for
    the site it names. The signature is ``<batch>.minisig`` unless ``signature`` is given.
    """
    batch = Path(batch)
    registry = as_registry(sites)
    limits = limits or OpenLimits()
    if not batch.is_file():
        raise InputError(f"no batch file at {batch}")
    sig = read_signature(Path(signature) if signature else signature_path(batch))
    if sig.algorithm != ALG_PREHASHED:
        raise IntegrityError("signature: legacy minisign (Ed) signature refused: sites sign prehashed (ED)")
    fields = parse_trusted_comment(sig.trusted_comment)  # not trusted yet: it only chooses the key
    site = fields.get("site", "")
    key = site_key(sig, site, registry)

    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_exception(exc) from None
    batch_size = batch.stat().st_size
    _need_space(output, batch_size, limits, f"the private copy of {batch.name}")
    work = Path(tempfile.mkdtemp(prefix=".sfr-open.", suffix=".part", dir=output))
    try:
        copy = work / ".batch.age"  # in a 0700 folder of ours, 0600: nobody else can change it
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(batch, "rb") as src, os.fdopen(fd, "wb") as dst:
            sha_hex, blake, copied = _copy_hashing(src, dst)
        verify_digest(sig, key, blake)  # now the trusted comment is the site's own words
        if fields.get("sha256") != sha_hex:
            raise IntegrityError("signature: the trusted comment names another SHA-256 than this file's")
        if fields.get("file") != batch.name:
            raise IntegrityError(f"signature: signed for file {fields.get('file')!r}, not {batch.name!r} "
                                 "(renamed, or another batch's signature)")
        batch_id = fields.get("batch", "")
        try:
            check_batch_id(batch_id)
        except ValueError:
            raise IntegrityError("signature: the trusted comment has no valid batch id") from None
        final = output / batch_id
        if final.exists():
            raise InputError(f"{final} already exists: refusing to overwrite an opened batch")
        unpacked = work / "unpacked"
        unpacked.mkdir(mode=0o700)
        with open(copy, "rb") as fh:
            decrypted = Decryptor(fh, identities)
            dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
            stream = dctx.stream_reader(decrypted, read_across_frames=True, closefd=False)  # type: ignore[arg-type]
            try:
                manifest, count, total = _unpack(stream, batch_id, site, unpacked, copied, limits)
            except zstandard.ZstdError:
                raise IntegrityError("batch: the payload is not a valid zstd stream") from None
        copy.unlink()
        try:
            os.rename(unpacked, final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise InputError(f"{final} appeared meanwhile: refusing to overwrite an opened batch") from None
            raise from_exception(exc) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fsync_dir(output)
    log.info("opened batch %s from site %s (key %s): %d files", batch_id, site, key_id_hex(key.key_id), count)
    return OpenedBatch(batch_id, site, key_id_hex(key.key_id), final, count, total, sha_hex, manifest)


__all__ = ["OpenedBatch", "open_batch"]
