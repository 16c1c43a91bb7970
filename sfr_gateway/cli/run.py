"""``sfr-gateway run``: the cron entry point (scan, gate, release, upload), quiet when all is well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import HeldBackError, Interrupted
from ..home.interrupt import MESSAGE, sigterm_interrupts
from ..home.logfile import current
from ..run.pipeline import run as run_pipeline
from .common import GatewayContext, echo_json, fail_if_undelivered, interactive, not_delivered, pass_gateway


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
    try:
        with sigterm_interrupts():
            report = _run(config, sources, dry_run, workers, as_json)
    except KeyboardInterrupt:
        raise Interrupted(MESSAGE) from None
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(report.summary_line())
        _attention(report, config)
    fail_if_undelivered(report.as_dict()["upload"])
    if report.held_back:
        raise HeldBackError(f"the run went on, but held back {report.held_back_text()}: "
                            "`sfr-gateway quarantine list` says why and what to do")


def _run(config: Any, sources: tuple[Path, ...], dry_run: bool, workers: int | None, as_json: bool) -> Any:
    """The pipeline, with a progress display on a terminal."""
    if interactive() and not as_json:
        from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed} files"),
                      TimeElapsedColumn(), transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, n: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=None)
                bar.update(tasks[stage], completed=n)

            return run_pipeline(config, sources, dry_run=dry_run, workers=workers, progress=progress)
    return run_pipeline(config, sources, dry_run=dry_run, workers=workers)


SHOWN = 20  # held-back files named on stderr; `quarantine list` names them all


def _attention(report: Any, config: Any) -> None:
    """What a human should look at, on stderr (cron mails it)."""
    logfile = current()
    if report.needs_attention:
        data = report.as_dict()
        new_unreadable = data["scan"].get("this_scan", {}).get("unreadable", 0)
        if new_unreadable:
            click.echo(f"attention: {new_unreadable} file(s) found unreadable by this scan (in all: "
                       f"{_counts(data['scan'].get('unreadable', {}))}): `sfr-gateway quarantine list` names them",
                       err=True)
        if data["release"].get("quarantined"):
            click.echo(f"attention: refused by the engine: {_counts(data['release']['quarantined_by_reason'])} "
                       f"(records in {config.home.quarantine}; `sfr-gateway quarantine list` names them)", err=True)
        for st in data["release"].get("held_back", {}).get("list", []):
            click.echo(f"attention: held back the study of {st['pseudonym']} ({st['files']} files, e.g. "
                       f"{st['example']}): {st['reason']}: {st['detail']}; retried at every run"
                       + (f"; traceback in {logfile}" if logfile else ""), err=True)
        files = data["release"].get("held_back", {}).get("file_list", [])
        for f in files[:SHOWN]:
            click.echo(f"attention: held back {f['path']}: same SOP Instance UID as {f['other_path']} (released), "
                       "other content", err=True)
        if len(files) > SHOWN:
            click.echo(f"attention: ... and {len(files) - SHOWN} more files held back", err=True)
        if files:
            click.echo("attention: `sfr-gateway quarantine list` says why and what to do", err=True)
        if data["upload"].get("failed"):
            click.echo(not_delivered(data["upload"]), err=True)


def _counts(by_reason: dict[str, int]) -> str:
    """'2 not-dicom, 1 truncated' (a reason count in words, not a Python dict)."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items())) or "none"


COMMANDS = [run]
