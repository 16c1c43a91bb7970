"""``sfr-gateway upload``: send pending batches and withdrawal requests (nothing is de-identified)."""

from __future__ import annotations

import click

from ..errors import Interrupted
from ..home.interrupt import MESSAGE, sigterm_interrupts
from ..run.pipeline import upload_only
from .common import GatewayContext, attention, echo_json, fail_if_undelivered, not_delivered, pass_gateway, stamp


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def upload(gw: GatewayContext, as_json: bool) -> None:
    """Send pending batches and withdrawal requests (nothing is de-identified)."""
    config = gw.config()
    try:
        with sigterm_interrupts():
            data = upload_only(config)
    except KeyboardInterrupt:
        raise Interrupted(MESSAGE) from None
    if as_json:
        echo_json(data)
    else:
        click.echo(f"{stamp()}uploaded {data['acknowledged']} batches to {data['destination']}; {data['pending']} pending")
        if data["failed"]:
            attention(not_delivered(data))
    fail_if_undelivered(data)


COMMANDS = [upload]
