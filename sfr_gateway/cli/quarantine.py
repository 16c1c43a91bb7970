"""``sfr-gateway quarantine list``: every file or study the gateway could not use, and why."""

from __future__ import annotations

from typing import Any

import click

from ..ledger import open_ledger
from ..run.held import held_back
from .common import GatewayContext, echo_json, pass_gateway

CSV_COLUMNS = ("kind", "path", "reason", "detail", "other_path", "pseudonym", "files", "since")


@click.group()
def quarantine() -> None:
    """Files the gateway could not use: unreadable, refused by the engine, held back."""


@quarantine.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_gateway
def list_(gw: GatewayContext, fmt: str, as_json: bool) -> None:
    """Every held-back study and file with its reason and what to do, the files the engine
    refused, and the files the scan could not read (each with its path, until fixed or gone)."""
    config = gw.config()
    with open_ledger(config.home.state_db) as ledger:
        data = held_back(ledger, refused=True, unreadable=True)
    if as_json or fmt == "json":
        echo_json(data)
    elif fmt == "csv":
        write_csv(data["items"])
    else:
        render(data, str(config.home.quarantine))


def write_csv(items: list[dict[str, Any]]) -> None:
    """One row per item, ``CSV_COLUMNS`` (a spreadsheet of the files to re-export)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for item in items:
        row = dict(item)
        if item["kind"] == "study":
            row["path"] = item.get("example", "")
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
    click.echo(buf.getvalue(), nl=False)


def render(data: dict[str, Any], records: str) -> None:
    """Plain lines (paths stay whole, to copy): held-back studies, held-back files, refused files."""
    items = data["items"]
    studies = [i for i in items if i["kind"] == "study"]
    files = [i for i in items if i["kind"] == "file"]
    refused = [i for i in items if i["kind"] == "refused"]
    unreadable = [i for i in items if i["kind"] == "unreadable"]
    click.echo(f"held back: {data['studies']} studies, {data['files']} files; refused by the engine: "
               f"{data['quarantined']} instances; unreadable: {data['unreadable']} files; "
               f"identical copies released once: {data['identical_copies']}")
    if studies:
        click.echo("\nstudies held back (retried at every run):")
        for st in studies:
            click.echo(f"- study of {st['pseudonym']} ({st['files']} files, e.g. {st['example']}): "
                       f"{st['reason']}: {st['detail']}; since {st['since']}, {st['attempts']} attempt(s)")
            click.echo(f"  what to do: {st['meaning']}")
    if files:
        click.echo("\nfiles held back (until they change):")
        for f in files:
            click.echo(f"- {f['path']}: {f['reason']}: {f['detail']}")
        click.echo(f"  what to do: {files[0]['meaning']}")
    if refused:
        click.echo(f"\nrefused by the engine (records in {records}):")
        for r in refused:
            click.echo(f"- {r['path'] or '(no longer in the index)'}: {r['reason']}")
    if unreadable:
        click.echo("\nfiles the scan could not read (until they change or are removed):")
        for u in unreadable:
            click.echo(f"- {u['path']}: {u['reason']}" + (f" ({u['detail']})" if u["detail"] else ""))
        click.echo(f"  what to do: {unreadable[0]['meaning']}")


COMMANDS = [quarantine]
