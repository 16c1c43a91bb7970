"""Atomic, durable file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` only if the block succeeds.

    The data is written to a hidden temp file beside ``path``, fsynced, then renamed
    over ``path``; on any exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    with atomic_writer(path, mode) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically with permissions ``mode``."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


_HASHED: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(st: os.stat_result) -> tuple[int, ...]:
    # ctime changes with any write, chmod, link or utime, and cannot be set back by a user
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remember_sha256(path: Path | str, sha256_hex: str) -> None:
    """Note that this process has just hashed ``path`` (e.g. a batch it wrote)."""
    _HASHED[os.fspath(path)] = (_identity(os.stat(path)), sha256_hex)


def known_sha256(path: Path | str) -> str | None:
    """The SHA-256 this process noted for ``path``, if the file is provably untouched since
    (same inode, size, mtime and ctime); None otherwise: hash it again."""
    entry = _HASHED.get(os.fspath(path))
    if entry is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return entry[1] if entry[0] == _identity(st) else None
