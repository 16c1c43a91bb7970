"""Bulkheads between studies: what one study's failure may stop, and what it must not.

A failure while de-identifying, packaging or recording one study (an unexpected exception in
the engine, a refused ledger record, a source that cannot be read) ends that study's batch,
with nothing of it recorded, holds the study back with a reason an operator can act on, and the
run goes on with the next study. A failure of the site itself (disk full, read-only HOME, a
busy or damaged ledger, missing keys, a dead worker pool, Ctrl-C) stops the run as before:
every later study would fail the same way, and the next run resumes.
"""

from __future__ import annotations

import errno
import sqlite3

from ..errors import DicomError, GatewayError, IntegrityError, is_storage_failure
from ..home.logfile import safe_traceback, where

HELD_REASONS = {
    "engine-error": "an unexpected error in the de-identification engine (a bug): the study is retried at "
                    "every run; please report it with the traceback in the log file",
    "ledger-conflict": "the ledger refused to record the study's batch (a constraint): nothing of it was "
                       "recorded or sent; retried at every run; report it with the log file",
    "package-error": "the study's batch could not be written (not a disk problem): nothing of it was "
                     "recorded or sent; retried at every run; report it with the log file",
    "source-error": "a source file of the study could not be read while packaging: check the export "
                    "(a file replaced or removed meanwhile?); retried at every run",
    "source-changed": "a file of the study vanished or changed after the scan read it (an export being "
                      "written or cleaned up): the next run rescans and retries; nothing to do unless it persists",
}


class StudyFailure(Exception):
    """One study cannot be released in this run: ``reason`` (a key of HELD_REASONS), ``detail``
    (exception type and place, errno or constraint; never a value) and a safe ``trace``."""

    def __init__(self, reason: str, detail: str, trace: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.trace = trace


# GatewayErrors that belong to one study; every other one is about the site (keys, config,
# ledger, a dead worker pool) and stops the run.
_STUDY_ERRORS = (DicomError, IntegrityError)


def study_failure(exc: BaseException) -> StudyFailure | None:
    """The per-study failure ``exc`` stands for, or None when it must stop the run."""
    if isinstance(exc, StudyFailure):
        return exc
    if not isinstance(exc, Exception) or isinstance(exc, MemoryError) or is_storage_failure(exc):
        return None
    trace = safe_traceback(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return StudyFailure("ledger-conflict", f"{exc} ({getattr(exc, 'sqlite_errorname', '')})", trace)
    if isinstance(exc, sqlite3.Error):
        return None  # busy, damaged, unexpected: the ledger, not this study
    if isinstance(exc, GatewayError):
        if isinstance(exc, _STUDY_ERRORS):
            return StudyFailure("package-error", f"{type(exc).__name__}: {exc}", trace)
        return None
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
        place = f" on {exc.filename}" if exc.filename else ""
        return StudyFailure("source-error", f"{name}{place} at {where(exc)}", trace)
    return StudyFailure("package-error", f"{type(exc).__name__} at {where(exc)}", trace)
