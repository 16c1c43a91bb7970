"""``sfr-gateway status``: batches by state, consent coverage, what is held back, last success and error."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..run import pipeline
from .common import GatewayContext, echo_json, pass_gateway


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_gateway
def status(gw: GatewayContext, as_json: bool) -> None:
    """Pending, sent, acknowledged and failed batches; consent coverage; last success and error."""
    data = pipeline.status(gw.config())
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    idx, con = data["index"], data["consent"]
    console.print(f"site {data['site_id']} → {data['destination']}")
    console.print(f"index: {idx['instances']} instances, {idx['studies']} studies; eligible: "
                  f"{idx['eligible']['studies']} studies")
    console.print(f"consent ({con['mode']}): {con['summary']}")
    nopid = con.get("without_patient_id", {})
    if nopid.get("eligible_instances"):
        verdict = "held" if nopid.get("policy") != "release" else "released without a consent check"
        console.print(f"no Patient ID: {nopid['eligible_instances']} eligible instances of {nopid['eligible_studies']} "
                      f"studies, {verdict} ([consent] without_patient_id = \"{nopid.get('policy')}\")")
    unresolved = con.get("unresolved_records", {})
    if unresolved:
        console.print("consent records applied to no scanned patient: "
                      + ", ".join(f"{n} {kind}" for kind, n in unresolved.items()) + " (see `consent list`)")
    table = Table(title="Batches")
    for col in ("state", "batches", "files", "bytes"):
        table.add_column(col, justify="right" if col != "state" else "left")
    for state, row in sorted(data["batches"].items()):
        table.add_row(state, str(row["batches"]), str(row["files"]), f"{row['bytes']:,}")
    console.print(table)
    if data.get("packaging", {}).get("batches"):
        pk = data["packaging"]
        console.print(f"packaging: {pk['batches']} batch{'' if pk['batches'] == 1 else 'es'} {pk['explanation']}",
                      soft_wrap=True, highlight=False, markup=False)
    _held(console, data["held_back"])
    console.print(f"last success: {data['last_success'] or 'never'}")
    if data["last_error"]:
        err = data["last_error"]
        console.print(f"last error: {err['at']} batch {err['batch_id']}: {err['error']}")
    sys.stdout.flush()


def _held(console: Any, held: dict[str, Any]) -> None:
    """The held-back studies and files, each with its reason (paths printed whole, not wrapped)."""
    if not (held["studies"] or held["files"] or held["quarantined"]):
        return
    console.print(f"held back: {held['studies']} studies, {held['files']} files; refused by the engine: "
                  f"{held['quarantined']} instances (`sfr-gateway quarantine list` says why and what to do)")
    for item in held["items"]:
        if item["kind"] == "study":
            line = (f"  study of {item['pseudonym']} ({item['files']} files, e.g. {item['example']}): "
                    f"{item['reason']}: {item['detail']} (since {item['since']}, {item['attempts']} attempts)")
        else:
            line = f"  {item['path']}: {item['reason']} (same SOP Instance UID as {item['other_path']})"
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    shown = len(held["items"])
    if held["studies"] + held["files"] > shown:
        console.print(f"  ... and {held['studies'] + held['files'] - shown} more")


COMMANDS = [status]
