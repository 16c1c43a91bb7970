"""The gateway's log file, ``HOME/logs/sfr-gateway.log``: what a human needs after the fact
(each run's summary, warnings, held-back studies with their traceback, internal errors), kept
off the terminal, every line timestamped.

Rotated by size (stdlib ``logging.handlers``; ``[log] max_bytes``, ``backups``: 10 MiB and 5
old files by default), and optionally copied to syslog (``[log] syslog``; journald reads the
same ``/dev/log`` socket). It never makes a command fail: a full or read-only disk, or a missing
syslog socket, loses log lines, not the run. Several processes (``run``, ``listen``) share the
file: rotation is done under an exclusive lock on the logs folder, and a process whose file was
rotated by another one reopens the new file at its next line.

Nothing written here may carry a patient value: tracebacks are rendered by ``safe_traceback``,
which keeps the stack (file, line, function, source line) and the exception's type, and the
message only of the exceptions whose messages we control or that name paths and codes (ours,
OSError, SQLite).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import os
import sqlite3
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GatewayError
from .config import whole_number

LOG_NAME = Path("logs") / "sfr-gateway.log"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # ISO 8601 with the UTC offset: lines from two machines compare
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
SYSLOG_FACILITIES = ("user", "daemon", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
_ADDRESS = 'config: log.syslog_address must be a socket path ("/dev/log") or "host:port" (UDP)'


@dataclass(frozen=True)
class LogSettings:
    """``[log]`` of config.toml: the rotated log file in HOME, and syslog (journald reads it too)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS
    syslog: bool = False
    syslog_address: str = "/dev/log"
    syslog_facility: str = "daemon"

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> LogSettings:
        """Checked like the rest of the config: a wrong value is a ConfigError naming the key."""
        t = raw.get("log", {})
        if not isinstance(t, dict):
            raise ConfigError("config: [log] must be a table")

        if not isinstance(t.get("syslog", False), bool):
            raise ConfigError("config: log.syslog must be true or false")
        facility, address = t.get("syslog_facility", "daemon"), t.get("syslog_address", "/dev/log")
        if not isinstance(facility, str) or facility.strip().lower() not in SYSLOG_FACILITIES:
            raise ConfigError(f"config: log.syslog_facility must be one of {', '.join(SYSLOG_FACILITIES)}")
        if not isinstance(address, str) or not address.strip():
            raise ConfigError(_ADDRESS)
        made = cls(max_bytes=whole_number(t, "log", "max_bytes", DEFAULT_MAX_BYTES, 0, 2**40),
                   backups=whole_number(t, "log", "backups", DEFAULT_BACKUPS, 0, 1000),
                   syslog=t.get("syslog", False), syslog_address=address.strip(),
                   syslog_facility=facility.strip().lower())
        made.syslog_target()
        return made

    def syslog_target(self) -> str | tuple[str, int]:
        """A UNIX socket path, or (host, port) for UDP."""
        if self.syslog_address.startswith("/"):
            return self.syslog_address
        host, sep, port = self.syslog_address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(_ADDRESS)
        return host.strip("[]"), int(port)

# Records for the file only (tracebacks): this logger never propagates to the terminal.
file_only = logging.getLogger("sfr_gateway.home.logfile")
file_only.propagate = False
file_only.setLevel(logging.INFO)
file_only.addHandler(logging.NullHandler())  # no log file (read-only HOME): dropped, never on the terminal


def formatter() -> logging.Formatter:
    return logging.Formatter(FORMAT, DATE_FORMAT)


class _QuietRotatingHandler(logging.handlers.RotatingFileHandler):
    """A log file that never disturbs the command: a full or read-only disk loses log lines,
    not the run, and prints no "--- Logging error ---" traceback on the terminal. The folder
    (0700) and the file (0600; rotated files keep it) are made at the first line, so a command
    that logs nothing (``audit``) leaves HOME as it was."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's hook: the first line opens the file
        path = Path(self.baseFilename)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        return open(fd, "a", encoding=self.encoding)  # noqa: SIM115 - the handler closes it

    def _reopen_if_moved(self) -> None:
        """Another process rotated the file: write to the new one (as WatchedFileHandler does)."""
        if self.stream is None:
            return
        try:
            now = os.stat(self.baseFilename)
            mine = os.fstat(self.stream.fileno())
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.stream.close()
        self.stream = None  # type: ignore[assignment]  # reopened by the next write

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        self._reopen_if_moved()
        return bool(self.maxBytes) and bool(super().shouldRollover(record))

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        """Rotate under an exclusive lock on the logs folder, unless another process just did.
        (Not a lock on the file itself: closing it, which rotating does, would release it
        before the renames.)"""
        if self.stream is None:
            self.stream = self._open()
        folder = os.open(os.path.dirname(self.baseFilename), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            try:
                now = os.stat(self.baseFilename)
            except FileNotFoundError:  # the other process renamed it and has not written yet
                now = None
            mine = os.fstat(self.stream.fileno())
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino) \
                    and now.st_size >= self.maxBytes:
                super().doRollover()  # closes our stream, renames, reopens at the next line
            else:
                self._reopen_if_moved()  # rotated meanwhile by the other process
        finally:
            os.close(folder)  # releases the lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shouldRollover(record):
                self.doRollover()
        except OSError:  # a rotation that failed costs the rotation, not the line
            pass
        try:
            logging.FileHandler.emit(self, record)
        except OSError:  # opening it failed (outside logging's own guard)
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


class _QuietSyslogHandler(logging.handlers.SysLogHandler):
    """Syslog (and journald, which reads /dev/log) that never disturbs the command either."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


_attached: dict[Path, list[logging.Handler]] = {}


def log_path(home: Path) -> Path:
    return Path(home) / LOG_NAME


def attach(home: Path, settings: LogSettings | None = None) -> Path:
    """Send the gateway's log records (INFO and above) and the file-only records to
    ``HOME/logs/sfr-gateway.log`` (folder 0700, file 0600, appended, made at the first line,
    rotated by size), and with ``[log] syslog`` warnings and errors to syslog. Returns its path.
    When it cannot be written (read-only HOME...), lines are lost and the command goes on."""
    path = log_path(home)
    if path in _attached:
        return path
    max_bytes = settings.max_bytes if settings else DEFAULT_MAX_BYTES
    backups = settings.backups if settings else DEFAULT_BACKUPS
    handler = _QuietRotatingHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
    handler.setFormatter(formatter())
    handler.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [handler]
    if settings is not None and settings.syslog:
        handlers.append(_syslog(settings))
    root = logging.getLogger("sfr_gateway")
    if root.getEffectiveLevel() > logging.INFO:  # the file takes INFO whatever -v says for the terminal
        root.setLevel(logging.INFO)  # (the terminal's handler keeps its own level)
    for h in handlers:
        root.addHandler(h)
        file_only.addHandler(h)
    _attached[path] = handlers
    return path


def _syslog(settings: LogSettings) -> logging.Handler:
    """Warnings and errors to syslog, tagged ``sfr-gateway[pid]``; a missing socket costs nothing."""
    target = settings.syslog_target()
    try:
        handler: logging.Handler = _QuietSyslogHandler(
            address=target, facility=logging.handlers.SysLogHandler.facility_names[settings.syslog_facility])
    except OSError:  # no syslog socket (a container): nothing to send to
        return logging.NullHandler()
    handler.setFormatter(logging.Formatter(f"sfr-gateway[{os.getpid()}]: %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    return handler


def detach_all() -> None:
    """Close the log files (end of a command; tests run many commands in one process)."""
    for handlers in _attached.values():
        for handler in handlers:
            logging.getLogger("sfr_gateway").removeHandler(handler)
            file_only.removeHandler(handler)
            handler.close()
    _attached.clear()
    logging.getLogger("sfr_gateway").setLevel(logging.NOTSET)


_terminal: logging.Handler | None = None


def to_stderr(level: int) -> None:
    """Log records at ``level`` and above on stderr, timestamped (cron appends them to a file).
    The level is the handler's, so the log file still gets INFO. Replaces the handler of an
    earlier command in the same process (tests), which may have held another stderr."""
    global _terminal
    import sys

    root = logging.getLogger()
    if _terminal is not None:
        root.removeHandler(_terminal)
    _terminal = logging.StreamHandler(sys.stderr)
    _terminal.setLevel(level)
    _terminal.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", DATE_FORMAT))
    root.addHandler(_terminal)
    root.setLevel(level)


def current() -> Path | None:
    """The log file in use, if any."""
    return next(iter(_attached), None)


def _trusted_message(exc: BaseException) -> bool:
    return isinstance(exc, (GatewayError, OSError, sqlite3.Error))


def safe_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and of its cause or context) without values that could be a
    patient's: the frames and the exception types, messages only when ``_trusted_message``."""
    parts: list[str] = []
    seen: set[int] = set()
    current_exc: BaseException | None = exc
    while current_exc is not None and id(current_exc) not in seen:
        seen.add(id(current_exc))
        frames = "".join(traceback.format_list(traceback.extract_tb(current_exc.__traceback__)))
        message = str(current_exc) if _trusted_message(current_exc) else "(message withheld: it may quote data)"
        parts.append(f"Traceback (most recent call last):\n{frames}{type(current_exc).__qualname__}: {message}")
        current_exc = current_exc.__cause__ or (None if current_exc.__suppress_context__ else current_exc.__context__)
    return "\n\nThe above exception led to the following one:\n\n".join(reversed(parts))


def where(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``module/file.py:line``: the last frame inside the gateway."""
    frames = traceback.extract_tb(exc.__traceback__)
    package = os.path.dirname(os.path.abspath(__file__))
    ours = [f for f in frames if os.path.abspath(f.filename).startswith(package + os.sep)]
    if not frames:
        return "?"
    frame = (ours or frames)[-1]
    name = os.path.relpath(frame.filename, package) if ours else os.path.basename(frame.filename)
    return f"{name}:{frame.lineno}"
