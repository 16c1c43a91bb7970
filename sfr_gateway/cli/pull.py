"""``sfr-gateway pull``: retrieve from the PACS only the consented patients' eligible studies."""

from __future__ import annotations

import click

from .common import GatewayContext, echo_json, pass_gateway


@click.command()
@click.option("--dry-run", is_flag=True, help="Query the PACS and say what would be retrieved; retrieve nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def pull(gw: GatewayContext, dry_run: bool, as_json: bool) -> None:
    """Query the [pacs] for the releasable patients' eligible chest-CT studies and retrieve them.

    Study-level C-FIND per releasable patient (Patient ID + issuer, the collection's date window),
    series-level C-FIND filtered by the selection rules, then C-MOVE to our listener (or C-GET)
    into the incoming folder that `run` scans. Incremental (a study is retrieved once), bounded
    ([pacs] max_studies), resumable. Exit 17 when the PACS is unreachable, too slow, drops the
    association or a retrieval is partial; 18 when it refuses us.
    """
    from ..dicomnet.pull import pull as run_pull

    report = run_pull(gw.config(), dry_run=dry_run)
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(report.summary_line())
        if report.error:
            click.echo(f"attention: {report.error}", err=True)
    report.raise_for_outcome()


COMMANDS = [pull]
