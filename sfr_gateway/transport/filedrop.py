"""``file:///dir``: a drop folder (a local disk, or a share the central host collects from).

Each file is copied to ``<name>.part`` (created with ``O_CREAT|O_EXCL|O_NOFOLLOW``: a symlink
planted there is never followed), fsynced, hard-linked to ``<name>`` (which fails if the name
exists: nothing is ever replaced, not even a file that appears meanwhile), the ``.part`` is
removed and the folder fsynced: a collector that ignores ``*.part`` never sees a partial batch. When the drop folder
is on the outbox's filesystem, ``<name>.part`` is a hard link to the (already fsynced,
never modified) batch file instead of a copy: the same bytes, without writing them twice. The signature is
placed first, so that whenever ``<batch>.age`` is visible its ``.minisig`` is too.

On a name clash: a regular file already there with the same SHA-256 counts as delivered (not
copied again); anything else (other bytes, a symlink, a folder) is an IntegrityError, nothing is
overwritten and the batch stays in the outbox until someone removes or renames the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, TransportError
from ..home.faults import checkpoint
from ..home.fsutil import fsync_dir
from .base import (
    DATA,
    SIGNATURE,
    Destination,
    Progress,
    Receipt,
    UploadState,
    check_batch,
    file_sha256,
    utcnow,
)

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
_BLOCK = 1024 * 1024


class FileDropDestination(Destination):
    """Copy batches into ``directory`` (which must exist: a missing mount is an error)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.url = self.directory.as_uri()

    def send(
        self,
        batch_path: Path,
        batch_id: str,
        sha256: str,
        size: int,
        state: UploadState,
        *,
        progress: Progress | None = None,
    ) -> Receipt:
        done = state.receipt(batch_id)
        if done is not None:
            log.info("batch %s: already delivered to %s, nothing to send", batch_id, self.url)
            return done
        if not self.directory.is_dir():
            raise TransportError(f"drop folder {self.directory} does not exist (share not mounted?)", "drop-folder")
        batch_path = Path(batch_path)
        sig_path = check_batch(batch_path, sha256, size)
        sig_target = self.directory / sig_path.name
        sig_sent = self._place(sig_path, sig_target, file_sha256(sig_path), None)
        data_target = self.directory / batch_path.name
        data_sent = self._place(batch_path, data_target, sha256.lower(), progress)
        receipt = Receipt(
            batch_id=batch_id,
            destination=self.url,
            location=data_target.as_uri(),
            signature_location=sig_target.as_uri(),
            sha256=sha256.lower(),
            size=size,
            bytes_sent=sig_sent + data_sent,
            resumed_from=0,
            already_complete=data_sent == 0,
            completed_at=utcnow(),
        )
        state.mark_done(batch_id, receipt, SIGNATURE)
        state.mark_done(batch_id, receipt, DATA)
        log.info("batch %s: %d bytes placed in %s", batch_id, receipt.bytes_sent, self.directory)
        return receipt

    def check(self) -> dict[str, Any]:
        if not self.directory.is_dir():
            raise TransportError(f"drop folder {self.directory} does not exist (share not mounted?)", "drop-folder")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise TransportError(f"drop folder {self.directory} is not writable by this user", "drop-folder")
        return {"destination": self.url, "kind": "drop folder", "writable": True}

    def _place(self, source: Path, target: Path, sha256: str, progress: Progress | None) -> int:
        """Copy ``source`` to ``target`` durably; return the bytes copied (0 if already there).

        Never writes through a planted link and never replaces a file: ``.part`` is created with
        ``O_CREAT|O_EXCL|O_NOFOLLOW`` (or is a new hard link), and the final name is made by
        hard-linking ``.part`` to it, which fails if anything appeared there meanwhile.
        """
        part = target.with_name(target.name + PART_SUFFIX)
        if _already_there(target, sha256):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)  # left by a process killed between the final link and this removal
            return 0
        total = source.stat().st_size
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)  # left by an interrupted attempt (a planted symlink is removed, never followed)
            if _link(source, part):
                copied = total
                if progress is not None:
                    progress(copied, total)
            else:
                copied = _copy(source, part, sha256, total, progress)
            checkpoint("drop-before-rename")
            placed = _publish(part, target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            fsync_dir(self.directory)
            checkpoint("drop-after-rename")
        except FileExistsError:
            raise TransportError(f"drop folder {self.directory}: {part.name} appeared while we wrote it "
                                 "(another writer?): nothing was overwritten, the next run retries", "drop-folder") from None
        except OSError as exc:
            raise TransportError(f"drop folder {self.directory}: cannot write {target.name}: {exc.strerror}",
                                 "drop-folder") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
        if not placed:  # the name was taken meanwhile: the same bytes count as delivered, others never replaced
            if _already_there(target, sha256):
                return 0
            raise IntegrityError(_clash(target))
        return copied


def _already_there(target: Path, sha256: str) -> bool:
    """True if ``target`` is a regular file with these bytes; IntegrityError if the name holds anything else."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode) and file_sha256(target) == sha256:
        return True
    raise IntegrityError(_clash(target))


def _clash(target: Path) -> str:
    return (f"drop folder: {target.name} exists with different content (or is not a regular file): "
            "refusing to overwrite; the batch stays in the outbox until someone removes or renames it")


def _publish(part: Path, target: Path) -> bool:
    """Give ``part`` its final name without ever replacing a file; False if the name is taken.

    A hard link fails when the name exists, so nothing can be replaced, even by a file that
    appears after our check. On a filesystem without hard links (some SMB shares) a rename is
    the only way: then a check just before it leaves a short race, logged as a warning.
    """
    try:
        os.link(part, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    log.warning("drop folder %s: no hard links on this filesystem; placing %s by rename (a file appearing "
                "under that name at the same instant could be replaced)", target.parent, target.name)
    if os.path.lexists(target):
        return False
    os.rename(part, target)
    return True


_NO_LINKS = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES)


def _link(source: Path, part: Path) -> bool:
    """Hard-link ``part`` to ``source``; False when the filesystem cannot (another device, a share)."""
    try:
        os.link(source, part)
    except OSError as exc:
        if exc.errno in _NO_LINKS:
            return False
        raise
    return True


def _copy(source: Path, part: Path, sha256: str, total: int, progress: Progress | None) -> int:
    """Copy ``source`` to ``part``, fsync it, check its SHA-256; return the bytes copied."""
    digest = hashlib.sha256()
    copied = 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        while block := src.read(_BLOCK):
            dst.write(block)
            digest.update(block)
            copied += len(block)
            if progress is not None:
                progress(copied, total)
        dst.flush()
        os.fsync(dst.fileno())
    if digest.hexdigest() != sha256:
        raise IntegrityError(f"drop folder: {source.name} changed while being copied")
    return copied
