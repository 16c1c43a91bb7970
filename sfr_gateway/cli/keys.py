"""``sfr-gateway keys``: show the public key, escrow/restore the pseudonym secret, rotate keys.

Light at import: the library is imported inside each command.
"""

from __future__ import annotations

from pathlib import Path

import click

from .common import GatewayContext, echo_json, pass_gateway


@click.group()
def keys() -> None:
    """The site's keys: public signing key, pseudonym-secret escrow, rotations."""


@keys.command("show")
@click.option("--public", "public_only", is_flag=True,
              help="Print only the minisign public-key file (what the centre sends at enrolment).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_gateway
def show_cmd(gw: GatewayContext, public_only: bool, as_json: bool) -> None:
    """The site's public signing key (minisign format) and key fingerprints."""
    from ..keys.admin import show

    facts = show(gw.home)
    if public_only:
        click.echo(facts["signing_public_key"], nl=False)
        return
    if as_json:
        echo_json(facts)
        return
    click.echo(f"site signing key id:          {facts['signing_key_id']}  ({facts['signing_public_key_file']})")
    if "pseudonym_secret_fingerprint" in facts:
        click.echo(f"pseudonym secret fingerprint: {facts['pseudonym_secret_fingerprint']}")
    click.echo(facts["signing_public_key"].rstrip())


@keys.command("escrow")
@click.option("--recipient", required=True, metavar="AGE_PUBLIC_KEY", help="The custodian's age key (age1...).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypted output (default: ./pseudonym-secret-FINGERPRINT.age).")
@pass_gateway
def escrow_cmd(gw: GatewayContext, recipient: str, output: Path | None) -> None:
    """Encrypt the pseudonym secret with age for safe keeping off this machine."""
    from ..keys.admin import escrow

    out, fp = escrow(gw.home, recipient, output)
    click.echo(f"pseudonym secret {fp} encrypted to {recipient}: {out}")
    click.echo("Keep it off this machine; restore with: sfr-gateway keys restore FILE --identity KEYFILE")


@keys.command("restore")
@click.argument("escrow_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--identity", "-i", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The custodian's age identity file.")
@pass_gateway
def restore_cmd(gw: GatewayContext, escrow_file: Path, identity: Path) -> None:
    """Restore an escrowed pseudonym secret into this HOME's keys/ (never over a different one)."""
    from ..keys.admin import restore

    fp, written = restore(gw.home, escrow_file, identity)
    click.echo(f"pseudonym secret {fp} " + ("restored into " if written else "already present in ")
               + str(gw.home.pseudonym_key))


@keys.command("rotate-signing")
@pass_gateway
def rotate_signing_cmd(gw: GatewayContext) -> None:
    """New site signing key; its public key is announced in a statement signed by the old key."""
    from ..keys.admin import rotate_signing

    cfg = gw.config()
    r = rotate_signing(gw.home, cfg.site_id)
    click.echo(f"site signing key rotated: {r.old_key_id} -> {r.new_key_id}")
    click.echo(f"announcement (signed by the old key): {r.statement} and {r.signature.name}")
    click.echo(f"old key archived: {r.archived}")


@keys.command("rotate-pseudonym")
@click.option("--i-understand-linkage-breaks", "acknowledged", is_flag=True,
              help="Required: new pseudonyms will not link to anything already released.")
@pass_gateway
def rotate_pseudonym_cmd(gw: GatewayContext, acknowledged: bool) -> None:
    """New pseudonym secret (refused without --i-understand-linkage-breaks); the old one is archived."""
    from ..keys.admin import rotate_pseudonym

    gw.config()
    old_fp, new_fp, archived = rotate_pseudonym(gw.home, acknowledged=acknowledged)
    click.echo(f"pseudonym secret rotated: {old_fp} -> {new_fp}; old secret archived in {archived}")
    click.echo("Linkage with earlier releases is broken from now on.")


COMMANDS = [keys]
