"""What ``run`` does after each run, whatever its end: record its outcome in the ledger, write the
Prometheus textfile, refresh the status page, send the alert the outcome calls for.

``watch_run`` wraps the run (the CLI's printing and exit-code decision included, so the exit
code recorded is the one cron sees). Its settings are read and its secret files checked before
the run starts (a wrong ``[alerts]`` section stops the run at once, exit 3 or 4, instead of
failing silently when the alert is due); after the run, nothing it does can change the run's
exit code: each step that fails costs a warning in the log file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError, LockHeldError, from_exception
from ..home.config import Config
from ..home.logfile import current
from ..ledger import open_ledger
from ..ledger.db import utcnow
from . import alerts, health, metrics, page, runs, state
from .settings import Settings, from_config

log = logging.getLogger(__name__)


@dataclass
class RunWatch:
    """Filled by the caller while the run goes: its report and summary line."""

    report: Any = None
    summary: str = ""
    started: float = field(default_factory=time.time)
    done: dict[str, Any] = field(default_factory=dict)  # what the after-run steps did (tests, --json)


def exit_code_of(exc: BaseException | None) -> int | None:
    """The exit code a run ending with ``exc`` gets; None when it is not a run's end to record
    (the lock held by another run; the interpreter exiting)."""
    if exc is None:
        return 0
    if isinstance(exc, LockHeldError):
        return None
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, Exception):
        return from_exception(exc).exit_code
    return None


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Exception):
        err = exc if isinstance(exc, GatewayError) else from_exception(exc)
        return " ".join(str(err).split())[:500]  # ours: paths and codes, never a patient value
    return None


@contextlib.contextmanager
def watch_run(config: Config, *, dry_run: bool = False) -> Iterator[RunWatch]:
    """Wrap one run (nothing for a dry run: it is not a run of the site)."""
    watch = RunWatch()
    if dry_run:
        yield watch
        return
    settings = from_config(config.raw)
    settings.alerts.check_secrets()
    try:
        yield watch
    except BaseException as exc:
        code = exit_code_of(exc)
        if code is not None:
            after_run(config, settings, watch, code, exc)
        raise
    after_run(config, settings, watch, 0, None)


def after_run(config: Config, settings: Settings, watch: RunWatch, code: int, exc: BaseException | None) -> None:
    """Record, measure, show, alert; never raises."""
    try:
        _after_run(config, settings, watch, code, exc)
    except Exception as err:  # noqa: BLE001 - monitoring never fails the run it watches
        log.warning("after the run, monitoring failed: %s", type(err).__name__)


def _after_run(config: Config, settings: Settings, watch: RunWatch, code: int, exc: BaseException | None) -> None:

    report = watch.report.as_dict() if watch.report is not None else {}
    outcome = runs.outcome_of(code)
    record: dict[str, Any] = {
        "exit_code": code, "seconds": round(time.time() - watch.started, 3), "error": _error_text(exc),
        "summary": watch.summary or None,
        "released": int(report.get("release", {}).get("instances", 0)),
        "batches_sent": int(report.get("upload", {}).get("acknowledged", 0)),
        "bytes_sent": int(report.get("upload", {}).get("bytes_sent", 0)),
    }
    previous, ended_at = None, None
    try:
        with open_ledger(config.home.state_db) as ledger:
            last = runs.history(ledger, 1)
            previous = last[0]["outcome"] if last else None
            runs.record_outcome(ledger, outcome, record)
            ended_at = runs.history(ledger, 1)[0]["ended_at"]  # the recorded time: metrics agree with status
        watch.done["recorded"] = True
    except Exception as err:  # noqa: BLE001 - the ledger may be what failed the run
        log.warning("the run's outcome could not be recorded in the ledger: %s", type(err).__name__)
    record.update(outcome=outcome, ended_at=ended_at or utcnow())
    now = dt.datetime.now(dt.UTC)
    try:
        data = state.collect(config, now=now, coverage=report.get("consent") or None)
    except Exception as err:  # noqa: BLE001 - a broken ledger: the metrics and alert say what is known
        log.warning("after the run, the site's state could not be read: %s", type(err).__name__)
        data = {"site_id": config.site_id, "runs": {"last": [record]}}
        data["health"] = health.judge(data, settings.monitoring, now).as_dict()
    if settings.monitoring.metrics:
        path = settings.monitoring.metrics_path(config.home.root)
        _step(watch, "metrics", lambda: metrics.write(path, metrics.render(data, record)))
    page_path = settings.monitoring.status_page_path(config.home.root)
    if page_path is not None:

        _step(watch, "status_page", lambda: page.write(page_path, page.render(data)))
    kind = alerts.due(settings.alerts, outcome, previous)
    if kind is not None:

        logfile = current()
        fields = alerts.message(kind, config.site_id, record, data["health"]["line"], str(logfile) if logfile else None)
        watch.done["alert"] = alerts.send(settings.alerts, config.site_id, fields)


def _step(watch: RunWatch, name: str, action: Any) -> None:
    try:
        action()
        watch.done[name] = "written"
    except Exception as err:  # noqa: BLE001 - e.g. a full disk: the run's exit code says the rest
        log.warning("after the run, the %s could not be written: %s", name.replace("_", " "), err)
        watch.done[name] = f"failed: {type(err).__name__}"
