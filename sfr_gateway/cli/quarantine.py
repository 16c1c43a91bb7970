"""``sfr-gateway quarantine list``: what is held back from release, and why."""

from __future__ import annotations

from typing import Any

import click

from ..ledger import open_ledger
from ..run.held import held_back
from .common import GatewayContext, echo_json, pass_gateway


@click.group()
def quarantine() -> None:
    """Studies and files held back from release, and files the engine refused."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def list_(gw: GatewayContext, as_json: bool) -> None:
    """Every held-back study and file with its reason and what to do, then the refused files."""
    config = gw.config()
    with open_ledger(config.home.state_db) as ledger:
        data = held_back(ledger, refused=True)
    if as_json:
        echo_json(data)
        return
    render(data, str(config.home.quarantine))


def render(data: dict[str, Any], records: str) -> None:
    """Plain lines (paths stay whole, to copy): held-back studies, held-back files, refused files."""
    items = data["items"]
    studies = [i for i in items if i["kind"] == "study"]
    files = [i for i in items if i["kind"] == "file"]
    refused = [i for i in items if i["kind"] == "refused"]
    click.echo(f"held back: {data['studies']} studies, {data['files']} files; refused by the engine: "
               f"{data['quarantined']} instances; identical copies released once: {data['identical_copies']}")
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


COMMANDS = [quarantine]
