"""``sfr-gateway central``: the central host's tool (its age key, its site registry, opening batches).

It needs no gateway HOME; it keeps its own folder, CENTRAL_HOME (``--central-home``, else
``$SFR_CENTRAL_HOME``, else ``~/.local/share/sfr-central``): see ``sfr_gateway.central.home``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..central import (
    CentralHome,
    SiteRegistry,
    add_site,
    default_central_home,
    load_identities,
    open_batch,
    open_withdrawal_request,
    parse_public_key,
    remove_site,
)
from ..central import keygen as make_identity
from ..errors import KeyFileError
from .common import echo_json

pass_central = click.make_pass_decorator(CentralHome)


@click.group()
@click.option("--central-home", type=click.Path(file_okay=False, path_type=Path), envvar="SFR_CENTRAL_HOME",
              help="The central host's folder (site registry, [open] limits, central.key); "
                   "default: $SFR_CENTRAL_HOME or ~/.local/share/sfr-central.")
@click.pass_context
def central(ctx: click.Context, central_home: Path | None) -> None:
    """Tools for the central host that receives batches (needs no gateway HOME)."""
    ctx.obj = CentralHome(central_home or default_central_home())


@central.command("keygen")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the identity here (0600, never overwritten); default: print it on stdout.")
def keygen_cmd(output: Path | None) -> None:
    """Make the central host's age identity; print its recipient (give it to the sites)."""
    identity, text = make_identity(output)
    if output is None:
        click.echo(text, nl=False)
        click.echo(f"Public key: {identity.recipient}", err=True)
    else:
        click.echo(str(identity.recipient))


@central.command("open")
@click.argument("batch", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--identity", "-i", "identity_file", type=click.Path(dir_okay=False, path_type=Path),
              help="age identity file of the central host (0600); default: CENTRAL_HOME/central.key.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that receives OUTPUT/<batch id>/.")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Signature file (default: BATCH.minisig).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_central
def open_cmd(home: CentralHome, batch: Path, identity_file: Path | None, output: Path, signature: Path | None,
             as_json: bool) -> None:
    """Verify BATCH's signature with the key registered for the site it names, decrypt it, check
    every file against the manifest, unpack. Exit 12 when anything does not verify."""
    registry = SiteRegistry.load(home)
    if identity_file is None:
        if not home.identity.exists():
            raise KeyFileError(f"no --identity and no {home.identity}: give the central host's age identity")
        identity_file = home.identity
    opened = open_batch(batch, load_identities(identity_file), registry, output, signature=signature,
                        limits=home.limits())
    if as_json:
        echo_json({"batch_id": opened.batch_id, "site": opened.site, "key_id": opened.key_id,
                   "directory": str(opened.directory), "files": opened.files, "bytes": opened.bytes,
                   "sha256": opened.sha256})
    else:
        click.echo(f"batch {opened.batch_id} from site {opened.site} (key {opened.key_id}): signature, decryption "
                   f"and {opened.files} files verified; unpacked to {opened.directory}")


@central.group("site")
def site() -> None:
    """The site registry: which minisign key signs for which site (CENTRAL_HOME/sites.json)."""


@site.command("add")
@click.argument("site_id", metavar="SITE")
@click.argument("public_key", metavar="PUBKEY")
@click.option("--also", is_flag=True, help="Add a second key to a registered site (a signing-key rotation).")
@pass_central
def site_add(home: CentralHome, site_id: str, public_key: str, also: bool) -> None:
    """Register SITE's minisign public key PUBKEY (its site-signing.pub file, or the base64 line).

    The key is checked (format, a usable Ed25519 point) and may sign for one site only.
    """
    entry, added = add_site(home, site_id, parse_public_key(public_key), also=also)
    state = "registered" if added else "already registered"
    click.echo(f"site {entry.site}: key {entry.key_id} {state} in {home.sites}")


@site.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_central
def site_list(home: CentralHome, as_json: bool) -> None:
    """The registered sites and their key ids."""
    entries = list(SiteRegistry.load(home))
    if as_json:
        echo_json([e.as_dict() for e in entries])
    elif not entries:
        click.echo(f"no site registered in {home.sites}")
    for e in [] if as_json else entries:
        click.echo(f"{e.site}\t{e.key_id}\tadded {e.added}")


@site.command("remove")
@click.argument("site_id", metavar="SITE")
@click.option("--key", "key_id", metavar="KEY_ID", help="Remove only this key of SITE (after a rotation).")
@pass_central
def site_remove(home: CentralHome, site_id: str, key_id: str | None) -> None:
    """Forget SITE (or one of its keys): its batches no longer open here."""
    gone = remove_site(home, site_id, key_id)
    click.echo(f"site {site_id}: removed key(s) {', '.join(e.key_id for e in gone)}")


@central.command("withdrawal")
@click.argument("request", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Signature file (default: REQUEST.minisig).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_central
def withdrawal_cmd(home: CentralHome, request: Path, signature: Path | None, as_json: bool) -> None:
    """Verify a delivered withdrawal request with the key registered for the site it names;
    print the pseudonym whose data must be deleted. Exit 12 when anything does not verify."""
    payload = open_withdrawal_request(request, SiteRegistry.load(home), signature=signature)
    if as_json:
        echo_json(payload)
    else:
        click.echo(f"withdrawal request {payload['request_id']} from site {payload['site']} "
                   f"({payload['created_at']}): signature verified; delete every batch of {payload['pseudonym']}")


COMMANDS = [central]
