"""``sfr-gateway run``: the cron entry point (scan, gate, release, upload), quiet when all is well."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import click

from ..errors import HeldBackError, Interrupted
from ..home.interrupt import MESSAGE, sigterm_interrupts
from ..home.logfile import current, file_only
from ..monitor.watch import watch_run
from ..run.pipeline import run as run_pipeline
from .common import GatewayContext, attention, echo_json, fail_if_undelivered, interactive, not_delivered, pass_gateway, stamp


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what would be released and sent; change nothing outside the index.")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=None, help="De-identification processes (default: up to 2).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def run(gw: GatewayContext, sources: tuple[Path, ...], dry_run: bool, workers: int | None, as_json: bool) -> None:
    """Scan, select, gate on consent, de-identify, package, encrypt, sign and upload.

    Exports come from SOURCES or from [site] exports in config.toml. One run at a time:
    a second one exits at once with code 7. Quiet when all is well (one line).
    """

    config = gw.config()
    with watch_run(config, dry_run=dry_run) as watch:  # outcome, metrics, status page, alert: whatever the end
        try:
            with sigterm_interrupts():
                _run(config, watch, sources, dry_run, workers, as_json)
        except KeyboardInterrupt:
            raise Interrupted(MESSAGE) from None


def _run(config: Any, watch: Any, sources: tuple[Path, ...], dry_run: bool, workers: int | None, as_json: bool) -> None:
    if interactive() and not as_json:
        with StageBars() as bars:
            report = run_pipeline(config, sources, dry_run=dry_run, workers=workers, progress=bars.update)
    else:
        report = run_pipeline(config, sources, dry_run=dry_run, workers=workers)
    watch.report, watch.summary = report, report.summary_line()
    file_only.info("run: %s", watch.summary)  # the log file keeps every run's summary, timestamped
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(stamp() + watch.summary)
        if dry_run:
            _would_release(report.release.get("would_release", {}))
        _attention(report, config)
    fail_if_undelivered(report.as_dict()["upload"])
    if report.held_back:
        raise HeldBackError(f"the run went on, but held back {report.held_back_text()}: "
                            "`sfr-gateway quarantine list` says why and what to do")


def _would_release(would: dict[str, Any]) -> None:
    """The studies a dry run would release, one line each (the first SHOWN; --json lists all)."""
    studies = would.get("list", [])
    for st in studies[:SHOWN]:
        who = ", ".join(st["pseudonyms"]) if st.get("pseudonyms") else "(pseudonym: needs keys/pseudonym.key)"
        click.echo(f"  would release the study of {who}: {st['instances']} instances in {st['series']} series "
                   f"({st['bytes'] / 1e6:.1f} MB) from {st['folder']}")
    if len(studies) > SHOWN:
        click.echo(f"  ... and {len(studies) - SHOWN} more studies (`run --dry-run --json` lists them all)")


SHOWN = 20  # held-back files named on stderr; `quarantine list` names them all


def _attention(report: Any, config: Any) -> None:
    """What a human should look at, on stderr (cron mails it)."""
    logfile = current()
    if report.needs_attention:
        data = report.as_dict()
        new_unreadable = data["scan"].get("this_scan", {}).get("unreadable", 0)
        if new_unreadable:
            attention(f"{new_unreadable} file(s) found unreadable by this scan (in all: "
                      f"{_counts(data['scan'].get('unreadable', {}))}): `sfr-gateway quarantine list` names them")
        if data["release"].get("quarantined"):
            attention(f"refused by the engine: {_counts(data['release']['quarantined_by_reason'])} "
                      f"(records in {config.home.quarantine}; `sfr-gateway quarantine list` names them)")
        for st in data["release"].get("held_back", {}).get("list", []):
            attention(f"held back the study of {st['pseudonym']} ({st['files']} files, e.g. "
                       f"{st['example']}): {st['reason']}: {st['detail']}; retried at every run"
                       + (f"; traceback in {logfile}" if logfile else ""))
        files = data["release"].get("held_back", {}).get("file_list", [])
        for f in files[:SHOWN]:
            attention(f"held back {f['path']}: same SOP Instance UID as {f['other_path']} (released), "
                       "other content")
        if len(files) > SHOWN:
            attention(f"... and {len(files) - SHOWN} more files held back")
        if files:
            attention("`sfr-gateway quarantine list` says why and what to do")
        if data["upload"].get("failed"):
            attention(not_delivered(data["upload"]))


def _counts(by_reason: dict[str, int]) -> str:
    """'2 not-dicom, 1 truncated' (a reason count in words, not a Python dict)."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items())) or "none"


# Progress bars for a person at a terminal (never under cron): one per stage of ``run`` (scan,
# release, upload), each with its total, how far it is and the time left once the total is known;
# a spinner until then.
UNITS = {"scan": "files", "release": "instances", "upload": "bytes"}
LABELS = {"scan": "scanning", "release": "de-identifying and packaging", "upload": "uploading"}


class StageBars:
    """``update(stage, done, total=None)`` as ``run.pipeline.run``'s ``progress`` calls it."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        class Count(ProgressColumn):
            """``12/600 files`` (bytes shown as MB by DownloadColumn)."""

            def __init__(self) -> None:
                super().__init__(table_column=Column(no_wrap=True))
                self.files, self.bytes = MofNCompleteColumn(), DownloadColumn()

            def render(self, task: Any) -> Any:
                unit = task.fields.get("unit", "files")
                if unit == "bytes":
                    return self.bytes.render(task)
                text = self.files.render(task)
                text.append(f" {unit}")
                return text

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                                  BarColumn(), Count(),
                                  TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"),
                                  TimeRemainingColumn(), transient=True)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StageBars:
        self._progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.__exit__(kind, exc, tb)

    def update(self, stage: str, done: int, total: int | None = None) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(LABELS.get(stage, stage), total=None,
                                                                unit=UNITS.get(stage, "files"))
        if total is not None:
            self._progress.update(task, total=total, completed=done)
        else:
            self._progress.update(task, completed=done)


COMMANDS = [run]
