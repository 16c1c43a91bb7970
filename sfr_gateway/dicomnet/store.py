"""The incoming folder: where received instances become files, durably and never half-written.

Each instance is written to a temp file in a sibling folder that nothing scans
(``.<incoming>.partial``), read back with the scan's own header reader (a truncated or
unparseable data set is refused there, with the scan's reason), fsynced, then renamed to
``incoming/<Study UID>/<Series UID>/<SOP Instance UID>.dcm`` and the folder fsynced. Only then
may the sender be told "success". A re-sent instance lands on the same name: if the bytes are
the same, the file already there is left untouched (no rescan), so it arrives once.

No pynetdicom here: the listener and C-GET both call :meth:`Incoming.store`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DicomError
from ..home.faults import checkpoint
from ..home.fsutil import fsync_dir
from ..scan.header import read_header
from . import statuses

log = logging.getLogger(__name__)

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EACCES}
_TEMP = re.compile(r"^(\d+)\.\d+\.part$")


def valid_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 defines it (digits and dots, no leading zero, at most 64 characters):
    the only kind of name the listener turns into a path."""
    return 0 < len(value) <= 64 and bool(_UID.match(value))


@dataclass(frozen=True)
class Stored:
    """What storing one instance did: ``status`` goes back to the sender."""

    status: int
    reason: str | None = None  # a key of statuses.REFUSALS when refused
    detail: str = ""
    path: Path | None = None
    duplicate: bool = False
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.status == statuses.SUCCESS


def refused(reason: str, detail: str = "") -> Stored:
    return Stored(statuses.REFUSALS[reason][0], reason, detail)


def partial_folder(incoming: Path) -> Path:
    """The temp folder beside ``incoming`` (same file system, so the rename is atomic)."""
    return incoming.parent / f".{incoming.name}.partial"


class Incoming:
    """Durable, atomic writes of received instances below one incoming folder."""

    def __init__(self, root: Path, admitted: frozenset[str]) -> None:
        self.root = Path(root).absolute()
        self.partial = partial_folder(self.root)
        self.admitted = admitted
        self._counter = itertools.count(1)
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()

    def prepare(self) -> int:
        """Create the folders (0700), check they share a file system, and remove the temp files
        of dead processes (a listener killed mid-write). Returns how many were removed."""
        try:
            for folder in (self.root, self.partial):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the incoming folder {self.root}: {exc.strerror or exc}") from None
        if os.stat(self.root).st_dev != os.stat(self.partial).st_dev:
            raise ConfigError(f"{self.partial} and {self.root} must be on the same file system (atomic rename)")
        removed = 0
        for entry in os.scandir(self.partial):
            m = _TEMP.match(entry.name)
            if m and not _alive(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            log.warning("removed %d partial file(s) left by an interrupted listener", removed)
        return removed

    def store(self, sop_class: str, sop_instance: str, parts: Sequence[bytes | memoryview]) -> Stored:
        """Write one received instance (``parts``: preamble, file meta and data set, as sent)."""
        if sop_class not in self.admitted:
            return refused("not-admitted", f"SOP Class {sop_class}")
        tmp = self.partial / f"{os.getpid()}.{next(self._counter)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            return self._resource(exc)
        try:
            try:
                size = _write_all(fd, parts)
                problem = _check(tmp, sop_class, sop_instance)
                if isinstance(problem, Stored):
                    return problem
                names = problem
                os.fsync(fd)
            finally:
                os.close(fd)
            checkpoint("listen-before-rename")
            final = self.root / names[0] / names[1] / f"{names[2]}.dcm"
            self._make_dirs(final.parent)
            if _same_file(final, tmp, size):
                return Stored(statuses.SUCCESS, path=final, duplicate=True, size=size)
            os.replace(tmp, final)
            fsync_dir(final.parent)
            return Stored(statuses.SUCCESS, path=final, size=size)
        except OSError as exc:
            return self._resource(exc)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _make_dirs(self, folder: Path) -> None:
        if folder in self._known_dirs:
            return
        with self._lock:
            for parent, child in ((self.root, folder.parent), (folder.parent, folder)):
                if child not in self._known_dirs:
                    try:
                        child.mkdir(mode=0o700)
                        fsync_dir(parent)  # the new folder's entry is durable before a file in it is
                    except FileExistsError:
                        pass
                    self._known_dirs.add(child)

    @staticmethod
    def _resource(exc: OSError) -> Stored:
        name = errno.errorcode.get(exc.errno or 0, "")
        log.error("cannot write a received instance: %s (%s)", exc.strerror or exc, name)
        if exc.errno in _RESOURCE_ERRNOS or exc.errno is None:
            return refused("out-of-resources", name or str(exc))
        return refused("out-of-resources", name)


def _check(tmp: Path, sop_class: str, sop_instance: str) -> Stored | tuple[str, str, str]:
    """The (study, series, instance) UIDs that name the file, or the refusal."""
    try:
        facts, _, _ = read_header(os.fsencode(tmp))
    except DicomError as exc:
        reason = exc.reason if exc.reason in statuses.REFUSALS else "unparseable"
        return refused(reason, exc.detail or exc.reason)
    if facts.sop_class_uid != sop_class or facts.sop_instance_uid != sop_instance:
        return refused("uid-mismatch", "SOPClassUID/SOPInstanceUID differ from the request")
    names = (facts.study_uid, facts.series_uid, facts.sop_instance_uid)
    if not all(valid_uid(u) for u in names):
        return refused("bad-uid", "StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID")
    return names


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> int:
    size = 0
    for part in parts:
        view = memoryview(part)
        while view:
            n = os.write(fd, view)
            view = view[n:]
            size += n
    return size


def _same_file(final: Path, tmp: Path, size: int) -> bool:
    """True when ``final`` already holds exactly the bytes of ``tmp`` (a re-sent instance)."""
    try:
        if os.stat(final).st_size != size:
            return False
        with open(final, "rb") as a, open(tmp, "rb") as b:
            while True:
                x, y = a.read(1 << 20), b.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except FileNotFoundError:
        return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
