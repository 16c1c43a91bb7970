"""``sfr-gateway run`` (the cron entry point), ``upload`` and ``status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import TransportError
from .common import GatewayContext, echo_json, interactive, pass_gateway


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
    from ..pipeline import run as run_pipeline

    config = gw.config()
    if interactive() and not as_json:
        from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}: {task.completed} files"),
                      TimeElapsedColumn(), transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, n: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=None)
                bar.update(tasks[stage], completed=n)

            report = run_pipeline(config, sources, dry_run=dry_run, workers=workers, progress=progress)
    else:
        report = run_pipeline(config, sources, dry_run=dry_run, workers=workers)
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(report.summary_line())
        _attention(report, config)
    _fail_if_undelivered(report.as_dict()["upload"])


def _fail_if_undelivered(upload: dict[str, Any]) -> None:
    """Undelivered batches make the exit code 10 (after the report): cron and timers notice.
    They stay pending; the next run resumes them."""
    if upload.get("failed"):
        raise TransportError(f"{len(upload['failed'])} item(s) not delivered; they stay pending for the next run")


def _attention(report: Any, config: Any) -> None:
    """What a human should look at, on stderr (cron mails it)."""
    if report.needs_attention:
        data = report.as_dict()
        if data["scan"].get("unreadable"):
            click.echo(f"attention: unreadable files by reason: {data['scan']['unreadable']}", err=True)
        if data["release"].get("quarantined"):
            click.echo(f"attention: quarantined (see {config.home.quarantine}): "
                       f"{data['release']['quarantined_by_reason']}", err=True)
        if data["upload"].get("failed"):
            click.echo(f"attention: not delivered: {data['upload']['failed']}", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def upload(gw: GatewayContext, as_json: bool) -> None:
    """Send pending batches and withdrawal requests (nothing is de-identified)."""
    from ..pipeline import upload_only

    data = upload_only(gw.config())
    if as_json:
        echo_json(data)
    else:
        click.echo(f"uploaded {data['acknowledged']} batches to {data['destination']}; {data['pending']} pending")
        if data["failed"]:
            click.echo(f"attention: not delivered: {data['failed']}", err=True)
    _fail_if_undelivered(data)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def status(gw: GatewayContext, as_json: bool) -> None:
    """Pending, sent, acknowledged and failed batches; consent coverage; last success and error."""
    from ..pipeline import status as get_status

    data = get_status(gw.config())
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    idx, con = data["index"], data["consent"]
    console.print(f"site {data['site_id']} → {data['destination']}")
    console.print(f"index: {idx['instances']} instances, {idx['studies']} studies; eligible: "
                  f"{idx['eligible']['studies']} studies")
    console.print(f"consent ({con['mode']}): {con['summary']}")
    table = Table(title="Batches")
    for col in ("state", "batches", "files", "bytes"):
        table.add_column(col, justify="right" if col != "state" else "left")
    for state, row in sorted(data["batches"].items()):
        table.add_row(state, str(row["batches"]), str(row["files"]), f"{row['bytes']:,}")
    console.print(table)
    console.print(f"last success: {data['last_success'] or 'never'}")
    if data["last_error"]:
        err = data["last_error"]
        console.print(f"last error: {err['at']} batch {err['batch_id']}: {err['error']}")
    sys.stdout.flush()


COMMANDS = [run, upload, status]
