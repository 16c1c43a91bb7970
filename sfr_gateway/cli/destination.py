"""``sfr-gateway destination check``: probe the configured destination without sending a batch."""

from __future__ import annotations

import click

from ..errors import TransportError
from ..transport import destination_for, redact_url
from .common import GatewayContext, echo_json, pass_gateway


@click.group()
def destination() -> None:
    """Where batches go (drop folder or tus server)."""


@destination.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def check(gw: GatewayContext, as_json: bool) -> None:
    """Reach the destination with the configured TLS settings and credentials; send nothing.

    Exit 0 when it answers and accepts our credentials, 10 when unreachable or refused,
    11 when it rejects our credentials, 3 when [transport] is invalid.
    """

    config = gw.config()
    try:
        with destination_for(config.effective_destination, config.transport) as dest:
            facts = dest.check()
    except TransportError as exc:  # AuthError too: the JSON says why, the exit code stays 10 or 11
        if as_json:
            echo_json({"destination": redact_url(config.effective_destination), "ok": False,
                       "cause": exc.cause or type(exc).__name__, "error": str(exc), "exit_code": exc.exit_code})
        raise
    if as_json:
        echo_json({**facts, "ok": True})
    elif facts["kind"] == "tus":
        click.echo(f"{facts['destination']}: tus {', '.join(facts['versions'])} OK "
                   f"(checksum: {facts['checksum'] or 'not offered'}; max size: {facts['max_size'] or 'none'})")
    else:
        click.echo(f"{facts['destination']}: drop folder OK (writable)")


COMMANDS = [destination]
