"""Remove received files once they have left: data minimisation for the incoming folder.

A file the listener (or ``pull``) wrote is removed ``[dicom] keep_released_days`` days after the
destination acknowledged the batch that carried its instance (-1: never). Files not released
(waiting for consent, excluded by selection, refused by the engine) stay. Only files below the
incoming folder are ever removed; export folders are never touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os

from ..home.config import Config
from ..ledger import Ledger
from ..ledger import dicomnet as sql

log = logging.getLogger(__name__)


def prune_incoming(ledger: Ledger, config: Config, now: dt.datetime | None = None) -> int:
    """Remove the released, acknowledged files of the incoming folder; return how many."""
    days = config.dicom.keep_released_days
    root = config.incoming
    if days < 0 or not root.is_dir():
        return 0
    cutoff = ((now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)).isoformat(timespec="seconds")
    top = os.fsencode(os.path.realpath(root))
    paths = sql.removable_received(ledger, os.fsencode(root.absolute()), cutoff)
    removed: list[bytes] = []
    folders: set[bytes] = set()
    for path in paths:
        real = os.path.realpath(path)
        if not real.startswith(top + b"/"):  # a symbolic link out of the incoming folder: never followed
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        removed.append(path)
        folders.add(os.path.dirname(path))
    for folder in sorted(folders, key=len, reverse=True):  # series, then study folders, if now empty
        for empty in (folder, os.path.dirname(folder)):
            if os.path.realpath(empty) != top:
                with contextlib.suppress(OSError):
                    os.rmdir(empty)
    if removed:
        sql.mark_removed(ledger, removed)
        ledger.record_event("run", "prune-incoming", "ok", {"removed": len(removed), "keep_released_days": days})
        log.info("removed %d received file(s) released more than %d day(s) ago", len(removed), days)
    return len(removed)
