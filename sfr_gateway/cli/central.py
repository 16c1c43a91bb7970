"""``sfr-gateway central``: the central host's tool (make its age key, open a site's batch)."""

from __future__ import annotations

from pathlib import Path

import click

from ..central import keygen as make_identity
from ..central import load_identities, load_site_key, open_batch
from .common import echo_json


@click.group()
def central() -> None:
    """Tools for the central host that receives batches (needs no gateway HOME)."""


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
@click.option("--identity", "-i", "identity_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="age identity file of the central host.")
@click.option("--site-key", required=True, metavar="SITE_PUBLIC_KEY",
              help="The site's minisign public key: its .pub file, or the base64 key.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that receives OUTPUT/<batch id>/.")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Signature file (default: BATCH.minisig).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def open_cmd(batch: Path, identity_file: Path, site_key: str, output: Path, signature: Path | None,
             as_json: bool) -> None:
    """Verify the signature of BATCH, decrypt it, check every file against the manifest, unpack."""
    opened = open_batch(batch, load_identities(identity_file), load_site_key(site_key), output,
                        signature=signature)
    if as_json:
        echo_json({"batch_id": opened.batch_id, "site": opened.site, "directory": str(opened.directory),
                   "files": opened.files, "bytes": opened.bytes, "sha256": opened.sha256})
    else:
        click.echo(f"batch {opened.batch_id} from site {opened.site}: signature, decryption and "
                   f"{opened.files} files verified; unpacked to {opened.directory}")


COMMANDS = [central]
