"""``sfr-gateway upload``: send pending batches and withdrawal requests (nothing is de-identified)."""

from __future__ import annotations

import click

from ..run.pipeline import upload_only
from .common import GatewayContext, echo_json, fail_if_undelivered, pass_gateway


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def upload(gw: GatewayContext, as_json: bool) -> None:
    """Send pending batches and withdrawal requests (nothing is de-identified)."""
    data = upload_only(gw.config())
    if as_json:
        echo_json(data)
    else:
        click.echo(f"uploaded {data['acknowledged']} batches to {data['destination']}; {data['pending']} pending")
        if data["failed"]:
            click.echo(f"attention: not delivered: {data['failed']}", err=True)
    fail_if_undelivered(data)


COMMANDS = [upload]
