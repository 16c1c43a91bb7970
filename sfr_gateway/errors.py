"""One exception tree for the whole gateway, and the exit code of each branch.

Library code raises these; only ``sfr_gateway.cli`` turns them into exit codes.
Messages name tag keywords, paths and pseudonyms, never patient values.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway reports on purpose."""

    exit_code = 1


class ConfigError(GatewayError):
    """HOME or config.toml is missing, unreadable or invalid."""

    exit_code = 3


class KeyFileError(GatewayError):
    """A key file is missing, malformed, or readable by group/others."""

    exit_code = 4


class ProfileError(GatewayError):
    """A de-identification profile or override is invalid."""

    exit_code = 5


class LedgerError(GatewayError):
    """The SQLite ledger cannot be opened, migrated or written."""

    exit_code = 6


class LockHeldError(GatewayError):
    """Another run holds the HOME lock."""

    exit_code = 7


class InputError(GatewayError):
    """A source path or input file given on the command line is unusable."""

    exit_code = 8


class ConsentError(GatewayError):
    """A consent record or import is invalid."""

    exit_code = 9


class TransportError(GatewayError):
    """A destination cannot be reached or refused a batch. ``cause`` names why, when known:
    refused, dns, tls, timeout, unreachable, reset, http (``transport.causes``); drop-folder."""

    exit_code = 10

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class AuthError(TransportError):
    """The destination refused our credentials (401/403): a human must act."""

    exit_code = 11


class IntegrityError(GatewayError):
    """A signature, checksum, manifest or ciphertext does not verify."""

    exit_code = 12


class LeaksFoundError(GatewayError):
    """verify found residual PHI in de-identified output."""

    exit_code = 13


class MappingError(GatewayError):
    """The pseudonym mapping disagrees with a recomputation (secret changed?)."""

    exit_code = 14


class DicomError(GatewayError):
    """One input file cannot be processed; it is quarantined with ``reason``.

    Never escapes a run: the pipeline records it and goes on.
    """

    exit_code = 15

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StorageError(GatewayError):
    """The file system failed under a command: disk full, read-only, I/O error (ENOSPC, EROFS, EIO).

    Nothing half-written is ever marked done: the next run completes the work.
    """

    exit_code = 16


class DicomNetError(GatewayError):
    """A DICOM peer cannot be reached, answers too slowly, drops the association, or leaves a
    retrieval partial; or the listener cannot bind its port. ``pull`` resumes next time."""

    exit_code = 17


class DicomRefusedError(DicomNetError):
    """The PACS refused us: association rejected (our AE title unknown to it) or move destination
    unknown. A PACS administrator must act; retrying changes nothing."""

    exit_code = 18


class HeldBackError(GatewayError):
    """The run went on, but some studies or files were held back (listed by ``status`` and
    ``quarantine list``); everything else releasable was released."""

    exit_code = 19


class NeedsAttention(GatewayError):
    """``status`` found the site needing attention (WARNING or CRITICAL, named on its last line;
    ``status --check`` says it with the Nagios plugin codes instead)."""

    exit_code = 20


class Interrupted(GatewayError):
    """The command was interrupted (SIGINT: Ctrl-C, or SIGTERM: a service stopped) and stopped
    cleanly: nothing half-done was kept as done, the next run resumes. 128 + SIGINT, as shells do."""

    exit_code = 130


# errno values that mean the file system under HOME cannot take our writes (ENOSPC, EDQUOT,
# EFBIG: full or over a limit; EROFS, EACCES, EPERM: not writable; EIO: the device failed).
_STORAGE_ERRNOS = frozenset({"ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO"})
_VANISHED_ERRNOS = frozenset({"ENOENT", "ENOTDIR", "ESTALE"})
# SQLite primary result codes (https://sqlite.org/rescode.html), by what they mean for an operator.
_SQLITE_STORAGE = {13: "full", 10: "I/O error", 8: "read-only", 14: "cannot open"}
_SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_SQLITE_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_CONSTRAINT = 19


def is_storage_failure(exc: BaseException) -> bool:
    """True when ``exc`` says the disk or file system failed (not the data, not a bug)."""
    import errno
    import sqlite3

    if isinstance(exc, StorageError):
        return True
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in _SQLITE_STORAGE
    if isinstance(exc, OSError):
        return errno.errorcode.get(exc.errno or 0, "") in _STORAGE_ERRNOS
    return False


def from_exception(exc: BaseException) -> GatewayError:
    """The GatewayError an OSError or SQLite error stands for, by its cause (never its patient
    data: messages carry errno names, SQLite result codes, constraint names and paths only).

    Only a real storage failure (disk full, read-only, I/O error) becomes a StorageError; a
    constraint violation is a data or logic problem, a busy or damaged ledger a ledger problem.
    """
    import errno
    import sqlite3

    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if code in _SQLITE_STORAGE:
            return StorageError(f"the ledger (state.db) cannot be written: {exc} ({name}: disk full, read-only "
                                "HOME or I/O error); nothing was marked done, the next run resumes")
        if code in _SQLITE_BUSY:
            return LedgerError(f"the ledger (state.db) stayed locked by another process: {exc} ({name}); "
                               "nothing was marked done, run again when it is free")
        if code in _SQLITE_DAMAGED:
            return LedgerError(f"the ledger (state.db) is damaged: {exc} ({name}); restore it from a backup "
                               "or rebuild it (see README, Reliability)")
        if code == _SQLITE_CONSTRAINT or isinstance(exc, sqlite3.IntegrityError):
            return GatewayError(f"the ledger refused an inconsistent record: {exc} ({name}); not a disk "
                                "problem: nothing was marked done. A bug: please report it with the log file")
        return GatewayError(f"unexpected ledger error: {exc} ({name}); nothing was marked done. "
                            "A bug: please report it with the log file")
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__
        where = f" on {exc.filename}" if exc.filename else ""
        if name in _STORAGE_ERRNOS:
            return StorageError(f"file system error{where}: {exc.strerror or exc} ({name}); "
                                "nothing half-written was marked done, the next run resumes")
        if name in _VANISHED_ERRNOS:
            return InputError(f"a file or folder vanished while the command ran{where} ({name}); "
                              "nothing half-written was marked done, run again")
        return GatewayError(f"unexpected system error{where}: {exc.strerror or exc} ({name}); nothing "
                            "half-written was marked done. If it persists, report it with the log file")
    return GatewayError(f"internal error ({type(exc).__name__}): a bug; nothing half-written was marked done. "
                        "Please report it with the log file")


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug: please report it with the log)",
    2: "usage error (bad command line)",
    3: "configuration error (HOME, config.toml)",
    4: "key error (missing key, or key file readable by group/others)",
    5: "profile error (unknown tag, keyword, action or option)",
    6: "ledger error (state.db cannot be opened or written)",
    7: "another run holds the lock on HOME",
    8: "input error (source path missing or unreadable)",
    9: "consent error (invalid record or import)",
    10: "transport error (destination unreachable or refused)",
    11: "authentication refused by the destination (credentials)",
    12: "integrity error (signature, checksum or decryption failed)",
    13: "verify found residual PHI",
    14: "mapping mismatch (pseudonym secret changed?)",
    15: "a single input file could not be processed",
    16: "storage error (disk full, read-only file system, I/O error)",
    17: "DICOM network error (PACS unreachable, too slow, association dropped, retrieval partial; port in use)",
    18: "refused by the PACS (our AE title or the move destination unknown to it)",
    19: "partial run: some studies or files were held back, everything else went on (see `quarantine list`)",
    20: "status: the site needs attention (a WARNING or CRITICAL condition, named on the last line)",
    130: "interrupted (Ctrl-C, SIGINT or SIGTERM): nothing was sent half-way; run again to resume",
}
