"""The gateway's log file, ``HOME/logs/sfr-gateway.log``: what a human needs after the fact
(held-back studies with their traceback, internal errors), kept off the terminal.

Deliberately minimal (stdlib ``logging``, one file, no rotation yet). Nothing written here may
carry a patient value: tracebacks are rendered by ``safe_traceback``, which keeps the stack
(file, line, function, source line) and the exception's type, and the message only of the
exceptions whose messages we control or that name paths and codes (ours, OSError, SQLite).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import traceback
from pathlib import Path

from ..errors import GatewayError

LOG_NAME = Path("logs") / "sfr-gateway.log"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

# Records for the file only (tracebacks): this logger never propagates to the terminal.
file_only = logging.getLogger("sfr_gateway.home.logfile")
file_only.propagate = False
file_only.setLevel(logging.INFO)
file_only.addHandler(logging.NullHandler())  # no log file (read-only HOME): dropped, never on the terminal


class _QuietFileHandler(logging.FileHandler):
    """A log file that never disturbs the command: a full or read-only disk loses log lines,
    not the run, and prints no "--- Logging error ---" traceback on the terminal. The folder
    (0700) and the file (0600) are made at the first line, so a command that logs nothing
    (``audit``, a quiet ``run``) leaves HOME as it was."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's hook: the first line opens the file
        path = Path(self.baseFilename)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        return open(fd, "a", encoding=self.encoding)  # noqa: SIM115 - the handler closes it

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError:  # opening it failed (outside logging's own guard)
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


_attached: dict[Path, _QuietFileHandler] = {}


def log_path(home: Path) -> Path:
    return Path(home) / LOG_NAME


def attach(home: Path) -> Path:
    """Send the gateway's warnings and the file-only records to ``HOME/logs/sfr-gateway.log``
    (folder 0700, file 0600, appended, made at the first line). Returns its path. When it
    cannot be written (read-only HOME...), lines are lost and the command goes on."""
    path = log_path(home)
    if path in _attached:
        return path
    handler = _QuietFileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    logging.getLogger("sfr_gateway").addHandler(handler)
    file_only.addHandler(handler)
    _attached[path] = handler
    return path


def detach_all() -> None:
    """Close the log files (end of a command; tests run many commands in one process)."""
    for handler in _attached.values():
        logging.getLogger("sfr_gateway").removeHandler(handler)
        file_only.removeHandler(handler)
        handler.close()
    _attached.clear()


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
