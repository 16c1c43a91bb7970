"""``sfr-gateway init``: create HOME, config and keys."""

from __future__ import annotations

import click

from ..home.init import check_destination, init_site
from .common import GatewayContext, echo_json, pass_gateway


@click.command()
@click.option("--site-id", required=True, help="This centre's identifier, e.g. TEST01.")
@click.option("--central-recipient", "recipients", multiple=True, metavar="AGE_PUBLIC_KEY",
              help="The central host's age recipient (repeat during a key rotation).")
@click.option("--destination", default="", metavar="URL",
              help="file:///dir or https://host/files/ (default: a drop folder in HOME).")
@click.option("--export", "exports", multiple=True, metavar="DIR", help="A PACS export folder `run` scans.")
@click.option("--no-check", is_flag=True, help="Do not try to reach --destination first (e.g. not up yet).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def init(gw: GatewayContext, site_id: str, recipients: tuple[str, ...], destination: str,
         exports: tuple[str, ...], no_check: bool, as_json: bool) -> None:
    """Initialise a gateway HOME: config.toml, pseudonym secret, site signing key, ledger.

    With --destination, the destination is reached first (nothing sent): when it cannot be
    reached at all, nothing is created (exit 10) unless --no-check."""
    note = ""
    if destination and not no_check and not gw.home.config.exists():
        note = check_destination(destination)
    result = init_site(gw.home, site_id, recipients, destination, exports)
    if note:
        click.echo(f"attention: {note}", err=True)
    if as_json:
        echo_json({
            "home": str(result.home), "site_id": result.site_id,
            "created": {"pseudonym_secret": result.created_secret, "signing_key": result.created_signing_key},
            "pseudonym_secret_fingerprint": result.secret_fingerprint,
            "signing_key_id": result.signing_key_id,
            "signing_public_key": result.signing_public_key,
        })
        return
    click.echo(f"Initialised sfr-gateway HOME {result.home} for site {result.site_id}")
    kept = "" if result.created_secret else " (existing, kept)"
    click.echo(f"  pseudonym secret fingerprint: {result.secret_fingerprint}{kept}")
    kept = "" if result.created_signing_key else " (existing, kept)"
    click.echo(f"  site signing key id:          {result.signing_key_id}{kept}")
    click.echo("Send this public signing key to the central host at enrolment:")
    click.echo(result.signing_public_key.rstrip())


COMMANDS = [init]
