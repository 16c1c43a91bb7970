"""``sfr-gateway scan``: index PACS exports and say what they hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..consent.registry import coverage
from ..errors import ConfigError
from ..ledger import open_ledger
from ..ledger.held import unreadable_files
from ..ledger.instances import shared_groups
from ..scan.eligibility import EXCLUSION_REASONS
from ..scan.header import UNREADABLE_REASONS
from ..scan.walk import scan as run_scan
from .common import GatewayContext, echo_json, interactive, pass_gateway, wide_console

if TYPE_CHECKING:
    from rich.console import Console

# rich is imported where it draws: a cron rescan with --json never pays for it.


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def scan(gw: GatewayContext, sources: tuple[Path, ...], as_json: bool) -> None:
    """Index the DICOM files under SOURCES (read-only) and report eligibility.

    Without SOURCES, the export folders of config.toml ([site] exports) and the incoming folder
    of the DICOM listener, as `run` scans them."""
    config = gw.config()
    sources = sources or config.default_sources()
    if not sources:
        raise ConfigError("nothing to scan: give export folders, set [site] exports in config.toml, "
                          "or receive over DICOM (sfr-gateway listen)")
    with open_ledger(config.home.state_db) as ledger:
        if interactive() and not as_json:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(SpinnerColumn(), TextColumn("scanning: {task.completed} files"), TimeElapsedColumn(),
                          transient=True) as bar:
                task = bar.add_task("scan", total=None)
                result = run_scan(ledger, sources, config.selection, lambda n: bar.update(task, completed=n))
        else:
            result = run_scan(ledger, sources, config.selection)
        consent = coverage(ledger, config.consent, dt.date.today())
        data = result.as_dict()

        data["unreadable_files"] = [{"path": p.decode("utf-8", "backslashreplace"), "reason": r, "since": when}
                                    for p, r, when in unreadable_files(ledger)]
        if data["shared_uids"]["uids"]:
            data["shared_uid_groups"] = [[p.decode("utf-8", "backslashreplace") for p in group]
                                         for group in shared_groups(ledger, SHOWN_GROUPS)]
    data["consent"] = consent
    if as_json:
        echo_json(data)
    else:
        render_summary(data)


def render_summary(data: dict[str, Any]) -> None:
    """The human summary of a scan."""
    from rich.table import Table

    console = wide_console()
    this = data["this_scan"]
    console.print(
        f"Scanned {this['seen']} files: {this['read']} read, {this['unchanged']} unchanged, "
        f"{this['unreadable']} unreadable, {this['missing']} gone, {this['moved']} moved."
    )
    table = Table(title="Index", show_header=True)
    table.add_column("")
    for col in ("patients", "studies", "series", "instances"):
        table.add_column(col, justify="right")
    table.add_row("all", *(str(data[c]) for c in ("patients", "studies", "series", "instances")))
    table.add_row("eligible", *(str(data["eligible"][c]) for c in ("patients", "studies", "series", "instances")))
    console.print(table)
    _reasons(console, "Excluded instances by reason", "instances", data["excluded"], EXCLUSION_REASONS)
    _reasons(console, "Unreadable files by reason", "files", data["unreadable"], UNREADABLE_REASONS)
    if data["unreadable"]:
        console.print(f"{sum(data['unreadable'].values())} files could not be read: `sfr-gateway quarantine list` "
                      "names each with its reason (`scan --json` too).", soft_wrap=True)
    _shared(console, data)
    nopid = data.get("without_patient_id", {})
    if nopid.get("instances"):
        console.print(f"No Patient ID: {nopid['instances']} instances ({nopid['eligible_instances']} eligible, of "
                      f"{nopid['eligible_studies']} studies): no consent can match them; `run` holds them unless "
                      "[consent] without_patient_id = \"release\".")
    if "consent" in data:
        from .consent import render_coverage

        render_coverage(data["consent"])


def _reasons(console: Console, title: str, unit: str, counts: dict[str, int], meanings: dict[str, str]) -> None:
    """A table of counts by reason, with what each reason means; nothing when there are none."""
    if not counts:
        return
    from rich.table import Table

    table = Table(title=title)
    table.add_column("reason")
    table.add_column(unit, justify="right")
    table.add_column("meaning")
    for reason, count in sorted(counts.items()):
        table.add_row(reason, str(count), meanings.get(reason, ""))
    console.print(table)


SHOWN_GROUPS = 100  # SOP Instance UIDs shared by several files, listed with their paths


def _shared(console: Console, data: dict[str, Any]) -> None:
    """Files that share a SOP Instance UID (a re-export, or a modality reusing UIDs): the first
    one indexed is released; an identical copy is released once, a different one held back.
    Paths are printed whole (not wrapped), to be copied."""
    shared = data.get("shared_uids", {})
    if not shared.get("uids"):
        return
    console.print(f"{shared['files']} files share {shared['uids']} SOP Instance UIDs: of each, the first indexed "
                  "eligible file is the one released; identical copies are released once, files with other "
                  "content are held back (`sfr-gateway quarantine list` after a run).", soft_wrap=True)
    groups = data.get("shared_uid_groups", [])
    for n, group in enumerate(groups, 1):
        for i, path in enumerate(group):
            console.print(f"{f'{n}.':>4} {path}" if i == 0 else f"     {path}", soft_wrap=True, highlight=False,
                          markup=False)
    if shared["uids"] > len(groups):
        console.print(f"... and {shared['uids'] - len(groups)} more (`scan --json` lists {SHOWN_GROUPS} at most)")


COMMANDS = [scan]
