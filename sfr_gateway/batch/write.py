"""Batches: a tar stream (``manifest.json`` first, then the files) → zstd → age → outbox, signed.

The file in the outbox is ``<batch>.tar.zst.age`` (the name says what the payload is, so stock
tools open it: ``age -d -i KEY B.tar.zst.age | zstd -d | tar x``), with the detached minisign
signature ``<batch>.tar.zst.age.minisig`` beside it. The manifest says ``"payload": "tar+zstd"``.

Why room is kept at the front: the manifest comes first and carries every file's SHA-256 and
size, which are known only after the last file. The payload is age's STREAM of 64 KiB chunks,
each sealed with its own counter, so chunks need not be written in order: the files are tarred,
zstd-compressed (``tarzst``: frames compressed by a pool of threads) and encrypted once, as
they come, as chunks ``K, K+1, ...`` straight into the
batch's temp file, leaving ``K`` chunks of room at the front (``K`` from the number of files,
``HEAD_BYTES_PER_FILE`` each). When the last file is in, the manifest's tar member is compressed
into its own zstd frame, padded with a zstd skippable frame to exactly ``K`` chunks, and
encrypted as chunks ``0..K-1`` in front; then the whole file is hashed (SHA-256 for the ledger,
BLAKE2b-512 for the minisign signature). zstd decodes concatenated frames as one stream and
passes over skippable ones, so ``age -d | zstd -d | tar x`` sees one plain tar. No de-identified
plaintext ever touches the disk, and nothing is encrypted twice; a manifest bigger than its room
(far longer names than usual) moves the body further out under a new key (decrypted and
re-encrypted once). Memory stays bounded by the pieces in flight in ``tarzst`` (a few MiB per
compressing thread) and one chunk.

Once written, a batch is never regenerated: ``write_batch`` refuses an existing batch file, and
the final rename cannot replace one.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from .. import __version__
from ..crypto.age import CHUNK_SIZE, TAG_SIZE, ChunkWriter, Recipient, chunk_nonce, stream_header
from ..crypto.sign import SigningKey, sign_digest
from ..errors import IntegrityError, KeyFileError
from ..home.faults import checkpoint
from ..home.fsutil import atomic_write_text, fsync_dir, remember_sha256
from ..home.workers import usable_cpus
from .names import FORMAT, MANIFEST_NAME, PAYLOAD, SUFFIX, batch_path, check_member_name, signature_path
from .tarzst import BLOCK, RECORD, Member, tar_member, write_members

log = logging.getLogger(__name__)

DEFAULT_ZSTD_LEVEL = 1  # measured on synthetic CT: ratio 0.55 at ~3x the speed of level 3 (0.49); see benchmarks
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class PatientConsent:
    """A patient's consent at release time, pseudonymised (no PHI).

    No date: the consent or information date is a real date of the patient's care, and beside
    the shifted study dates and the real ``created`` time it would let anyone holding the batch
    estimate the patient's date offset. The local ledger keeps it (``batches.consent_date``).
    """

    pseudonym: str
    status: str


@dataclass(frozen=True)
class BatchInfo:
    """What the manifest says about a batch besides its files."""

    site: str
    batch_id: str
    profile: str
    options: tuple[str, ...] = ()
    ps315_edition: str = ""
    patients: tuple[PatientConsent, ...] = ()
    created: dt.datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """A batch written to the outbox."""

    batch_id: str
    path: Path
    signature_path: Path
    sha256: str
    size: int
    files: int
    plaintext_bytes: int
    tar_bytes: int
    compressed_bytes: int
    manifest: dict[str, Any]

    @property
    def ratio(self) -> float:
        """Compressed tar size / tar size (lower is better)."""
        return self.compressed_bytes / self.tar_bytes if self.tar_bytes else 1.0


def trusted_comment(site: str, batch_id: str, sha256_hex: str, file_name: str) -> str:
    """The signed comment: site, batch id, SHA-256 of the .age and its file name (tab-separated)."""
    for value in (site, batch_id, file_name):
        if any(c in value for c in "\t\r\n"):
            raise ValueError("trusted comment fields must not contain tabs or newlines")
    return f"site:{site}\tbatch:{batch_id}\tsha256:{sha256_hex}\tfile:{file_name}"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def hash_file(fh: BinaryIO, block: int = COPY_BLOCK) -> tuple[Any, Any, int]:
    """SHA-256 and BLAKE2b-512 (minisign's prehash) of an open file from its start, and its size.

    BLAKE2b runs in a helper thread beside SHA-256 (hashlib releases the GIL on large buffers):
    the two passes over each block take the time of the slower one."""
    sha256, blake2b = hashlib.sha256(), hashlib.blake2b(digest_size=64)
    fd, offset = fh.fileno(), 0
    with ThreadPoolExecutor(1, thread_name_prefix="blake2b") as helper:
        while data := os.pread(fd, block, offset):
            other = helper.submit(blake2b.update, data)
            sha256.update(data)
            other.result()
            offset += len(data)
    return sha256, blake2b, offset


_SKIPPABLE = 0x184D2A50  # a zstd skippable frame: every decoder passes over it (RFC 8878, 3.1.2)
HEAD_BYTES_PER_FILE = 512  # room reserved per file for the compressed manifest (a typical entry: ~150)


def _reserved_chunks(expected_files: int | None) -> int:
    """age chunks kept at the front of the payload for the compressed manifest."""
    if expected_files is None:
        return 1
    return -(-(4096 + HEAD_BYTES_PER_FILE * expected_files) // CHUNK_SIZE)


def _head_region(head_frame: bytes, chunks: int) -> bytes | None:
    """``head_frame`` padded with a skippable frame to exactly ``chunks`` chunks, or None if it
    does not fit."""
    pad = chunks * CHUNK_SIZE - len(head_frame) - 8
    if pad < 0:
        return None
    return head_frame + _SKIPPABLE.to_bytes(4, "little") + pad.to_bytes(4, "little") + bytes(pad)


def _rechunk(src: BinaryIO, src_header: int, src_first: int, src_aead: Any, ciphertext: int,
             dst: BinaryIO, dst_header: int, dst_first: int, dst_aead: Any) -> ChunkWriter:
    """Re-encrypt a payload body (chunks ``src_first``...) under a new key, from chunk ``dst_first``
    (a manifest bigger than the room kept for it: rare). Returns the finished writer."""
    dst.seek(dst_header + dst_first * (CHUNK_SIZE + TAG_SIZE))
    body = ChunkWriter(dst, dst_aead, first=dst_first)
    offset, left, counter = src_header + src_first * (CHUNK_SIZE + TAG_SIZE), ciphertext, src_first
    while left:
        take = min(CHUNK_SIZE + TAG_SIZE, left)
        sealed = os.pread(src.fileno(), take, offset)
        left -= take
        offset += take
        body.write(src_aead.decrypt(chunk_nonce(counter, left == 0), sealed, None))
        counter += 1
    body.finish()
    return body


def build_manifest(info: BatchInfo, created: dt.datetime, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest document (no PHI: pseudonyms, names, sizes and hashes only)."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "payload": PAYLOAD,
        "site": info.site,
        "batch_id": info.batch_id,
        "created": _iso(created),
        "gateway_version": __version__,
        "profile": {"name": info.profile, "options": list(info.options)},
        "ps315_edition": info.ps315_edition,
        "patients": [
            {"pseudonym": p.pseudonym, "consent_status": p.status} for p in info.patients
        ],
        "files": files,
        "counts": {
            "files": len(files),
            "bytes": sum(f["size"] for f in files),
            "patients": len(info.patients),
        },
    }
    clash = set(info.extra) & set(manifest)
    if clash:
        raise ValueError(f"manifest extra keys clash with standard keys: {sorted(clash)}")
    manifest.update(info.extra)
    return manifest


def _link_no_clobber(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise IntegrityError(f"{final.name} already exists: a batch's ciphertext is never regenerated") from None
    except OSError as exc:  # filesystems without hard links: rename after a check
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if final.exists():
            raise IntegrityError(f"{final.name} already exists: a batch's ciphertext is never regenerated") from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def compressor(level: int = DEFAULT_ZSTD_LEVEL, threads: int = 0, min_match: int = 0,
               hash_log: int = 0) -> zstandard.ZstdCompressor:
    """A zstd compressor (with checksums) at ``level``; ``min_match``/``hash_log`` override the
    level's own values when non-zero (any standard zstd decoder reads the result)."""
    if not (min_match or hash_log):
        return zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    overrides = {k: v for k, v in (("min_match", min_match), ("hash_log", hash_log)) if v}
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True, **overrides)
    return zstandard.ZstdCompressor(compression_params=params)


def write_batch(
    outbox: Path,
    info: BatchInfo,
    members: Iterable[Member],
    recipients: Sequence[Recipient],
    signing_key: SigningKey,
    *,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    zstd_threads: int = 0,
    zstd_min_match: int = 0,
    zstd_hash_log: int = 0,
    expected_files: int | None = None,
) -> BatchResult:
    """Package ``members`` ((arcname, bytes or :class:`FileMember`) pairs, any iterable; a third
    item adds keys to the file's manifest entry, e.g. ``transfer_syntax``) into a signed,
    encrypted batch. ``expected_files`` (how many members will come) sizes the room
    kept for the manifest; without it, or if it was too small, the batch is still right, at the
    cost of one more pass over it. ``zstd_threads`` threads compress the files (0: one per CPU).

    Writes ``outbox/<batch>.tar.zst.age`` atomically (temp, fsync, no-clobber link, fsync dir)
    then its ``.minisig``. Raises IntegrityError if the batch file already exists, KeyFileError
    without recipients, ValueError on an unsafe batch id or file name.
    """
    if not recipients:
        raise KeyFileError("no central recipient configured: add [central] recipients to config.toml")
    outbox = Path(outbox)
    final = batch_path(outbox, info.batch_id)
    if final.exists():
        raise IntegrityError(f"{final.name} already exists: a batch's ciphertext is never regenerated")
    trusted_comment(info.site, info.batch_id, "0" * 64, final.name)  # validate before any work
    outbox.mkdir(parents=True, exist_ok=True)
    created = info.created or dt.datetime.now(dt.UTC)
    mtime = int(created.timestamp())

    def make_compressor() -> zstandard.ZstdCompressor:  # one-shot frames: one compressor per thread
        return compressor(zstd_level, 0, zstd_min_match, zstd_hash_log)

    cctx = make_compressor()
    seen: set[str] = {MANIFEST_NAME}

    def check_name(name: str) -> None:
        check_member_name(name)
        if name in seen:
            raise ValueError(f"duplicate file name in batch: {name!r}")
        seen.add(name)

    header, aead = stream_header(recipients)
    first = _reserved_chunks(expected_files)
    out, tmp = _temp_beside(final)
    try:
        out.seek(len(header) + first * (CHUNK_SIZE + TAG_SIZE))
        body = ChunkWriter(out, aead, first=first)
        files, members_tar = write_members(members, body, make_compressor, zstd_threads or usable_cpus(), mtime,
                                           check=check_name)
        checkpoint("mid-encrypt")
        manifest = build_manifest(info, created, files)
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
        head = tar_member(MANIFEST_NAME, manifest_bytes, mtime)
        tar_len = len(head) + members_tar + 2 * BLOCK
        tail = b"\0" * (2 * BLOCK + (-tar_len % RECORD))
        body.write(cctx.compress(tail))
        body.finish()
        head_frame = cctx.compress(head)
        region = _head_region(head_frame, first)
        if region is None:  # more manifest than the room kept for it (rare): move the body under a new key
            chunks = -(-(len(head_frame) + 8) // CHUNK_SIZE)
            region = _head_region(head_frame, chunks)
            new_header, new_aead = stream_header(recipients)
            moved, moved_tmp = _temp_beside(final)
            try:
                _rechunk(out, len(header), first, aead, body.ciphertext_bytes, moved, len(new_header), chunks, new_aead)
            except BaseException:
                moved.close()
                moved_tmp.unlink(missing_ok=True)
                raise
            out.close()
            tmp.unlink(missing_ok=True)
            out, tmp, header, aead = moved, moved_tmp, new_header, new_aead
        assert region is not None  # noqa: S101 - sized just above
        out.seek(0)
        out.write(header)
        front = ChunkWriter(out, aead, first=0)
        front.write(region)
        front.end_region()
        out.flush()
        with ThreadPoolExecutor(1, thread_name_prefix="fsync") as helper:  # the disk writes while we hash
            synced = helper.submit(os.fsync, out.fileno())
            sha256, blake2b, size_on_disk = hash_file(out)
            synced.result()
        out.close()
        _link_no_clobber(tmp, final)
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(outbox)
    sha_hex = sha256.hexdigest()
    remember_sha256(final, sha_hex)  # upload's integrity check need not read it again in this run
    sig_path = signature_path(final)
    comment = trusted_comment(info.site, info.batch_id, sha_hex, final.name)
    atomic_write_text(sig_path, sign_digest(blake2b.digest(), signing_key, comment), 0o644)
    log.info("batch %s: %d files, %d bytes -> %d bytes", info.batch_id, len(files), manifest["counts"]["bytes"],
             size_on_disk)
    return BatchResult(
        batch_id=info.batch_id,
        path=final,
        signature_path=sig_path,
        sha256=sha_hex,
        size=size_on_disk,
        files=len(files),
        plaintext_bytes=manifest["counts"]["bytes"],
        tar_bytes=len(head) + members_tar + len(tail),
        compressed_bytes=len(head_frame) + body.plaintext_bytes,  # the compressed tar (room padding aside)
        manifest=manifest,
    )


def _temp_beside(final: Path) -> tuple[BinaryIO, Path]:
    """A hidden temp file (0644, read-write) in ``final``'s folder, and its path."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        os.fchmod(fd, 0o644)
        return os.fdopen(fd, "w+b"), Path(name)
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise


def list_batches(outbox: Path) -> list[Path]:
    """Batch files in ``outbox`` (``*.tar.zst.age``, not hidden temp files), sorted by name."""
    outbox = Path(outbox)
    if not outbox.is_dir():
        return []
    return sorted(p for p in outbox.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))


def remove_stale_temps(outbox: Path) -> int:
    """Delete temp files a crashed ``write_batch`` left (hidden ``.<batch>...tmp``); return how many.

    Call only while holding the HOME lock (no batch is being written). They hold ciphertext only.
    """
    outbox = Path(outbox)
    if not outbox.is_dir():
        return 0
    stale = [p for p in outbox.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and SUFFIX in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def sign_batch(age_path: Path, site: str, batch_id: str, signing_key: SigningKey) -> Path:
    """(Re)write the signature of an existing batch file, e.g. after a crash between the two.

    Ed25519 is deterministic: the same file, comment and key give the same signature.
    """
    age_path = Path(age_path)
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=64)
    with open(age_path, "rb") as fh:
        while block := fh.read(COPY_BLOCK):
            sha.update(block)
            blake.update(block)
    sig_path = signature_path(age_path)
    comment = trusted_comment(site, batch_id, sha.hexdigest(), age_path.name)
    atomic_write_text(sig_path, sign_digest(blake.digest(), signing_key, comment), 0o644)
    return sig_path
