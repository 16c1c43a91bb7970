"""Errors are named by their cause (issue 23): only a real storage failure gets the storage exit
code; a constraint violation is never one. One test per class, from real failures where the
machine can produce them (SQLite, /dev/full, the file system), and what a study's failure means
for the run (held back, or the run stops)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from sfr_gateway.errors import (
    ConfigError,
    DicomError,
    GatewayError,
    InputError,
    IntegrityError,
    KeyFileError,
    LedgerError,
    StorageError,
    from_exception,
    is_storage_failure,
)
from sfr_gateway.home import logfile
from sfr_gateway.run.bulkhead import study_failure


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test wants the real exception object
        return exc
    raise AssertionError("nothing raised")


def _db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None, timeout=0)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES ('a')")
    return conn


def test_a_unique_constraint_is_not_a_storage_error(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    exc = _raised(lambda: conn.execute("INSERT INTO t VALUES ('a')"))
    err = from_exception(exc)
    assert type(err) is GatewayError and err.exit_code == 1 and not is_storage_failure(exc)
    assert "UNIQUE constraint failed: t.k" in str(err) and "not a disk problem" in str(err)
    assert "disk full" not in str(err)
    assert study_failure(exc).reason == "ledger-conflict"  # one study held back, the run goes on


def test_a_full_database_is_a_storage_error(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    conn.execute("PRAGMA max_page_count = 2")
    exc = _raised(lambda: conn.execute("INSERT INTO t SELECT hex(randomblob(3000))"))
    assert isinstance(from_exception(exc), StorageError) and from_exception(exc).exit_code == 16
    assert study_failure(exc) is None  # the run stops: every study would fail the same way


def test_a_read_only_database_is_a_storage_error(tmp_path: Path) -> None:
    _db(tmp_path).close()
    conn = sqlite3.connect(f"file:{tmp_path / 't.db'}?mode=ro", uri=True)
    exc = _raised(lambda: conn.execute("INSERT INTO t VALUES ('b')"))
    assert isinstance(from_exception(exc), StorageError) and "read-only" in str(exc) + str(from_exception(exc))
    assert study_failure(exc) is None


def test_a_disk_io_error_of_sqlite_is_a_storage_error() -> None:
    exc = sqlite3.OperationalError("disk I/O error")  # SQLITE_IOERR cannot be provoked portably
    exc.sqlite_errorcode = 10 | (3 << 8)  # SQLITE_IOERR_WRITE, as sqlite3 sets it
    exc.sqlite_errorname = "SQLITE_IOERR_WRITE"
    assert isinstance(from_exception(exc), StorageError) and study_failure(exc) is None


def test_a_busy_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    holder = _db(tmp_path)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None, timeout=0)
    exc = _raised(lambda: other.execute("BEGIN IMMEDIATE"))
    err = from_exception(exc)
    assert isinstance(err, LedgerError) and err.exit_code == 6 and "locked" in str(err)
    assert study_failure(exc) is None


def test_a_damaged_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"not a database at all" * 200)
    conn = sqlite3.connect(tmp_path / "bad.db")
    exc = _raised(lambda: conn.execute("SELECT * FROM sqlite_master"))
    err = from_exception(exc)
    assert isinstance(err, LedgerError) and "damaged" in str(err)


def test_an_unexpected_sqlite_error_is_internal(tmp_path: Path) -> None:
    conn = _db(tmp_path)
    exc = _raised(lambda: conn.execute("SELECT * FROM no_such_table"))
    err = from_exception(exc)
    assert type(err) is GatewayError and err.exit_code == 1 and not isinstance(err, StorageError)


def test_no_space_left_is_a_storage_error() -> None:
    def write_full() -> None:
        with open("/dev/full", "wb", buffering=0) as fh:
            fh.write(b"x")

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    exc = _raised(write_full)
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert isinstance(from_exception(exc), StorageError) and "ENOSPC" in str(from_exception(exc))
    assert study_failure(exc) is None


@pytest.mark.parametrize("code", ["EROFS", "EIO", "EDQUOT", "EFBIG", "EACCES"])
def test_file_system_failures_are_storage_errors(code: str) -> None:
    number = getattr(errno, code)
    exc = OSError(number, os.strerror(number), "/srv/sfr-gateway/outbox/x")
    err = from_exception(exc)
    assert isinstance(err, StorageError) and code in str(err) and "/srv/sfr-gateway/outbox/x" in str(err)
    assert study_failure(exc) is None


def test_a_vanished_file_is_an_input_error_for_a_command_and_a_source_error_for_a_study(tmp_path: Path) -> None:
    exc = _raised(lambda: open(tmp_path / "gone.dcm", "rb"))  # noqa: SIM115
    err = from_exception(exc)
    assert isinstance(err, InputError) and err.exit_code == 8 and "gone.dcm" in str(err)
    failure = study_failure(exc)
    assert failure.reason == "source-error" and "ENOENT" in failure.detail


def test_another_system_error_is_not_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "full" / "x").mkdir(parents=True)
    exc = _raised(lambda: os.rmdir(tmp_path / "full"))
    assert exc.errno == errno.ENOTEMPTY
    err = from_exception(exc)
    assert type(err) is GatewayError and err.exit_code == 1 and "ENOTEMPTY" in str(err)


def test_a_bug_is_an_internal_error_and_holds_back_one_study_only() -> None:
    exc = _raised(lambda: {}["PatientName"])
    err = from_exception(exc)
    assert type(err) is GatewayError and err.exit_code == 1 and "KeyError" in str(err)
    assert "PatientName" not in str(err)  # a bug's message may quote data: never shown
    assert study_failure(exc).reason == "package-error"


@pytest.mark.parametrize(("exc", "per_study"), [
    (DicomError("changed-while-read"), True),
    (IntegrityError("batch file already exists"), True),
    (LedgerError("cannot start a transaction"), False),
    (KeyFileError("no central recipient"), False),
    (ConfigError("bad config"), False),
    (GatewayError("a de-identification worker process died"), False),
    (MemoryError(), False),
    (KeyboardInterrupt(), False),
])
def test_what_a_study_failure_may_stop(exc: BaseException, per_study: bool) -> None:
    assert (study_failure(exc) is not None) is per_study


def test_tracebacks_in_the_log_keep_the_stack_and_withhold_data() -> None:
    value = "".join(reversed("TNOPUD"))  # a patient value: in the data, never in the source

    def engine() -> None:
        raise ValueError(f"cannot clean {value}")

    def caller() -> None:
        try:
            engine()
        except ValueError as exc:
            raise RuntimeError("while cleaning " + value) from exc

    exc = _raised(caller)
    text = logfile.safe_traceback(exc)
    assert value not in text
    assert "ValueError" in text and "RuntimeError" in text and "in engine" in text and "in caller" in text
    assert text.index("ValueError") < text.index("RuntimeError")  # the cause first, as Python shows it
    assert logfile.where(exc).startswith("test_bulkhead_errors.py:")
    os_text = logfile.safe_traceback(_raised(lambda: open("/nonexistent/x.dcm", "rb")))  # noqa: SIM115
    assert "/nonexistent/x.dcm" in os_text  # paths may be named


def test_an_internal_error_goes_to_the_log_file_not_the_terminal(cli, home: Path, monkeypatch) -> None:
    from sfr_gateway.monitor import state  # what `status` calls (issue 17; was run.pipeline.status)

    value = "".join(reversed("TNOPUD"))

    def broken(*args, **kwargs):
        raise RuntimeError("a value like " + value)

    monkeypatch.setattr(state, "collect", broken)
    result = cli("--home", home, "status")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and value not in result.stderr
    assert "internal error (RuntimeError)" in result.stderr and "sfr-gateway.log" in result.stderr
    log = (home / "logs" / "sfr-gateway.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError" in log and value not in log
    assert oct((home / "logs" / "sfr-gateway.log").stat().st_mode & 0o777) == "0o600"
