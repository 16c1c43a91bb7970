"""``sfr-gateway status``: the site's state for a human (text), a program (``--json``), a web
page (``--format html``) or a monitoring system (``--check``: one line, Nagios plugin codes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, GatewayError, NeedsAttention, from_exception
from ..home.fsutil import atomic_write_text
from ..monitor import page, state
from ..monitor.health import CRITICAL, NAMES, SERVICE, UNKNOWN
from .common import GatewayContext, echo_json, pass_gateway, wide_console


@click.command()
@click.option("--check", is_flag=True,
              help="For monitoring systems: one line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default=None,
              help="text (default), json, or html (one self-contained page; with --output).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to FILE (atomically) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (same as --format json).")
@pass_gateway
def status(gw: GatewayContext, check: bool, fmt: str | None, output: Path | None, as_json: bool) -> None:
    """Batches by state, last runs, consent coverage, withdrawal requests, what is held back, the verdict.

    Exit 0 when all is well, 20 when the verdict (last line) is WARNING or CRITICAL; with
    --check, the Nagios codes instead (see the README's Monitoring section).
    """
    if check:
        _check(gw)
        return
    fmt = "json" if as_json and fmt is None else (fmt or "text")
    data = state.collect(gw.config())
    if fmt == "html":

        text = page.render(data)
        if output is None:
            click.echo(text, nl=False)
        else:
            page.write(output, text)
            click.echo(f"status page written to {output}")
    elif fmt == "json":
        if output is None:
            echo_json(data)
        else:
            import json


            atomic_write_text(output, json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n")
    else:
        _text(data, output)
    if data["health"]["code"]:
        raise click.exceptions.Exit(NeedsAttention.exit_code)


def _check(gw: GatewayContext) -> None:
    """One line and the Nagios code, whatever happens: a HOME that cannot be read is UNKNOWN
    (config) or CRITICAL (keys, ledger, disk: the next run would fail too)."""
    try:
        data = state.collect(gw.config())
    except ConfigError as exc:
        code, line = UNKNOWN, f"{SERVICE} UNKNOWN - {exc}"
    except GatewayError as exc:
        code, line = CRITICAL, f"{SERVICE} CRITICAL - {exc}"
    except Exception as exc:  # noqa: BLE001 - a monitoring plugin answers in one line, always

        err = from_exception(exc)
        code, line = (CRITICAL, f"{SERVICE} {NAMES[CRITICAL]} - {err}")
    else:
        code, line = int(data["health"]["code"]), data["health"]["line"]
    click.echo(" ".join(line.split()))
    sys.stdout.flush()
    raise click.exceptions.Exit(code)


def _text(data: dict[str, Any], output: Path | None) -> None:
    import io

    buffer = io.StringIO() if output is not None else None
    console = wide_console(file=buffer)
    _print(console, data)
    if output is not None and buffer is not None:

        atomic_write_text(output, buffer.getvalue())
    sys.stdout.flush()


def _print(console: Any, data: dict[str, Any]) -> None:
    from rich.table import Table

    say = lambda text: console.print(text, soft_wrap=True, highlight=False, markup=False)  # noqa: E731
    idx, con = data["index"], data["consent"]
    say(f"site {data['site_id']} → {data['destination']}")
    say(f"index: {idx['instances']} instances, {idx['studies']} studies; eligible: {idx['eligible']['studies']} studies")
    say(f"consent ({con['mode']}): {con['summary']}")
    nopid = con.get("without_patient_id", {})
    if nopid.get("eligible_instances"):
        verdict = "held" if nopid.get("policy") != "release" else "released without a consent check"
        say(f"no Patient ID: {nopid['eligible_instances']} eligible instances of {nopid['eligible_studies']} "
            f"studies, {verdict} ([consent] without_patient_id = \"{nopid.get('policy')}\")")
    unresolved = con.get("unresolved_records", {})
    if unresolved:
        say("consent records applied to no scanned patient: "
            + ", ".join(f"{n} {kind}" for kind, n in unresolved.items()) + " (see `consent list`)")
    table = Table(title="Batches")
    for col in ("state", "batches", "files", "bytes"):
        table.add_column(col, justify="right" if col != "state" else "left")
    for state_name, row in sorted(data["batches"].items()):
        table.add_row(state_name, str(row["batches"]), str(row["files"]), f"{row['bytes']:,}")
    console.print(table)
    _withdrawals(say, data["withdrawal_requests"])
    if data.get("packaging", {}).get("batches"):
        pk = data["packaging"]
        say(f"packaging: {pk['batches']} batch{'' if pk['batches'] == 1 else 'es'} {pk['explanation']}")
    _held(say, data["held_back"])
    last_runs = data["runs"]["last"]
    if last_runs:
        last = last_runs[0]
        say(f"last run: {last['ended_at']} {last['outcome']} (exit {last.get('exit_code')})"
            + (f": {last['error']}" if last.get("error") else ""))
    say(f"last success: {data['last_success'] or 'never'}")
    if data["last_error"]:
        err = data["last_error"]
        say(f"last error: {err['at']} batch {err['batch_id']}: {err['error']}")
    say(data["health"]["line"].split(" | ")[0])


def _withdrawals(say: Any, wr: dict[str, Any]) -> None:
    """Withdrawal requests: how many wait for delivery (each named), how many left."""
    say(f"withdrawal requests: {wr['pending']} pending, {wr['sent']} sent, {wr.get('acknowledged', 0)} acknowledged")
    for r in wr.get("pending_list", []):
        say(f"  request {r['id']} for {r['pseudonym']}: queued {r['created_at']} ({r['hours']} h ago), "
            f"{r['attempts']} attempts" + (f", last error: {r['last_error']}" if r.get("last_error") else ""))


def _held(say: Any, held: dict[str, Any]) -> None:
    """The held-back studies and files, each with its reason (paths printed whole, not wrapped)."""
    if not (held["studies"] or held["files"] or held["quarantined"]):
        return
    say(f"held back: {held['studies']} studies, {held['files']} files; refused by the engine: "
        f"{held['quarantined']} instances (`sfr-gateway quarantine list` says why and what to do)")
    for item in held["items"]:
        if item["kind"] == "study":
            line = (f"  study of {item['pseudonym']} ({item['files']} files, e.g. {item['example']}): "
                    f"{item['reason']}: {item['detail']} (since {item['since']}, {item['attempts']} attempts)")
        else:
            line = f"  {item['path']}: {item['reason']} (same SOP Instance UID as {item['other_path']})"
        say(line)
    shown = len(held["items"])
    if held["studies"] + held["files"] > shown:
        say(f"  ... and {held['studies'] + held['files'] - shown} more")


COMMANDS = [status]
