"""Shared helpers for the crypto, package and central tests (owned by the crypto area)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import zstandard
from tool_fixtures import require_tool

from sfr_gateway.batch.write import trusted_comment
from sfr_gateway.crypto import age
from sfr_gateway.crypto.sign import SigningKey, generate_signing_key, sign_digest

CHUNK = age.CHUNK_SIZE
# Sizes around the 64 KiB STREAM chunk, where off-by-one errors live.
EDGE_SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK]


def require_binary(name: str) -> str:
    """Path of an external tool; skipped when missing, failed under CI=true (tool_fixtures.require_tool)."""
    return require_tool(name)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


def payload_offset(ciphertext: bytes) -> int:
    """Offset of the first STREAM chunk (after the header and the 16-byte nonce)."""
    return ciphertext.index(b"\n---") + ciphertext[ciphertext.index(b"\n---") + 1 :].index(b"\n") + 2 + 16


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A tar archive from explicit TarInfo objects (to build hostile batches)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def seal_raw_batch(
    directory: Path,
    batch_id: str,
    tar_data: bytes,
    recipients: list[age.Recipient],
    key: SigningKey,
    site: str = "SITE-T",
) -> Path:
    """zstd + age + minisign an arbitrary tar as if a (possibly malicious) site had sent it."""
    path = directory / f"{batch_id}.tar.zst.age"
    compressed = zstandard.ZstdCompressor(level=1).compress(tar_data)
    path.write_bytes(age.encrypt_bytes(compressed, recipients))
    resign(path, key, site, batch_id)
    return path


def resign(path: Path, key: SigningKey | None = None, site: str = "SITE-T", batch_id: str | None = None) -> None:
    """Write a valid signature for whatever ``path`` now holds (to test the later checks)."""
    import hashlib

    data = path.read_bytes()
    key = key or generate_signing_key()
    comment = trusted_comment(site, batch_id or path.name.split(".")[0], hashlib.sha256(data).hexdigest(), path.name)
    Path(str(path) + ".minisig").write_text(sign_digest(hashlib.blake2b(data).digest(), key, comment))
