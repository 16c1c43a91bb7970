"""How batches are named on disk and inside: one rule, shared by the writer (``batch.write``),
the destinations (``transport/``), the upload and the receiving side (``central/``).

Light on purpose (no zstd, no cryptography): the transport interface and ``central`` import it.
"""

from __future__ import annotations

import re
from pathlib import Path

FORMAT = "sfr-gateway-batch/1"
PAYLOAD = "tar+zstd"
SUFFIX = ".tar.zst.age"
SIGNATURE_SUFFIX = ".minisig"
MANIFEST_NAME = "manifest.json"
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters and backslashes


def batch_path(outbox: Path, batch_id: str) -> Path:
    """``outbox/<batch>.tar.zst.age``."""
    check_batch_id(batch_id)
    return Path(outbox) / f"{batch_id}{SUFFIX}"


def signature_path(age_path: Path) -> Path:
    """``<batch>.tar.zst.age.minisig`` beside the batch."""
    return Path(str(age_path) + SIGNATURE_SUFFIX)


def check_batch_id(batch_id: str) -> None:
    """A batch id is a safe file name: letters, digits, ``.``, ``_``, ``-`` (≤ 128)."""
    if not BATCH_ID_RE.match(batch_id) or ".." in batch_id:
        raise ValueError(f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' and '-'")


def check_member_name(name: str) -> None:
    """A relative POSIX path without '.', '..', empty parts, backslashes or control characters."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or _UNSAFE_CHARS.search(name)
        or len(name.encode("utf-8")) > 1024
    ):
        raise ValueError(f"unsafe file name in batch: {name!r}")
