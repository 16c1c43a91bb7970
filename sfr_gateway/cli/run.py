"""``sfr-gateway run`` (the cron entry point), ``upload`` and ``status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import HeldBackError, TransportError
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
    from ..run.pipeline import run as run_pipeline

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
    if report.held_back:
        raise HeldBackError(f"the run went on, but held back {report.held_back_text()}: "
                            "`sfr-gateway quarantine list` says why and what to do")


def _fail_if_undelivered(upload: dict[str, Any]) -> None:
    """Undelivered batches make the exit code 10 (after the report): cron and timers notice.
    They stay pending; the next run resumes them."""
    if upload.get("failed"):
        raise TransportError(f"{len(upload['failed'])} item(s) not delivered; they stay pending for the next run")


SHOWN = 20  # held-back files named on stderr; `quarantine list` names them all


def _attention(report: Any, config: Any) -> None:
    """What a human should look at, on stderr (cron mails it)."""
    from ..home.logfile import current

    logfile = current()
    if report.needs_attention:
        data = report.as_dict()
        if data["scan"].get("unreadable"):
            click.echo(f"attention: unreadable files by reason: {data['scan']['unreadable']}", err=True)
        if data["release"].get("quarantined"):
            click.echo(f"attention: quarantined (see {config.home.quarantine}): "
                       f"{data['release']['quarantined_by_reason']}", err=True)
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
            click.echo(f"attention: not delivered: {data['upload']['failed']}", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def upload(gw: GatewayContext, as_json: bool) -> None:
    """Send pending batches and withdrawal requests (nothing is de-identified)."""
    from ..run.pipeline import upload_only

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
    from ..run.pipeline import status as get_status

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
    nopid = con.get("without_patient_id", {})
    if nopid.get("eligible_instances"):
        verdict = "held" if nopid.get("policy") != "release" else "released without a consent check"
        console.print(f"no Patient ID: {nopid['eligible_instances']} eligible instances of {nopid['eligible_studies']} "
                      f"studies, {verdict} ([consent] without_patient_id = \"{nopid.get('policy')}\")")
    unresolved = con.get("unresolved_records", {})
    if unresolved:
        console.print("consent records applied to no scanned patient: "
                      + ", ".join(f"{n} {kind}" for kind, n in unresolved.items()) + " (see `consent list`)")
    table = Table(title="Batches")
    for col in ("state", "batches", "files", "bytes"):
        table.add_column(col, justify="right" if col != "state" else "left")
    for state, row in sorted(data["batches"].items()):
        table.add_row(state, str(row["batches"]), str(row["files"]), f"{row['bytes']:,}")
    console.print(table)
    _held(console, data["held_back"])
    console.print(f"last success: {data['last_success'] or 'never'}")
    if data["last_error"]:
        err = data["last_error"]
        console.print(f"last error: {err['at']} batch {err['batch_id']}: {err['error']}")
    sys.stdout.flush()


def _held(console: Any, held: dict[str, Any]) -> None:
    """The held-back studies and files, each with its reason (paths printed whole, not wrapped)."""
    if not (held["studies"] or held["files"] or held["quarantined"]):
        return
    console.print(f"held back: {held['studies']} studies, {held['files']} files; refused by the engine: "
                  f"{held['quarantined']} instances (`sfr-gateway quarantine list` says why and what to do)")
    for item in held["items"]:
        if item["kind"] == "study":
            line = (f"  study of {item['pseudonym']} ({item['files']} files, e.g. {item['example']}): "
                    f"{item['reason']}: {item['detail']} (since {item['since']}, {item['attempts']} attempts)")
        else:
            line = f"  {item['path']}: {item['reason']} (same SOP Instance UID as {item['other_path']})"
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    shown = len(held["items"])
    if held["studies"] + held["files"] > shown:
        console.print(f"  ... and {held['studies'] + held['files'] - shown} more")


COMMANDS = [run, upload, status]
