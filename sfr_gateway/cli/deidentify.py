"""``sfr-gateway deidentify``: de-identify files into a folder (no selection, no consent gate)."""

from __future__ import annotations

from pathlib import Path

import click

from ..deid.folder import RunSpec, run
from ..deid.profile import DEFAULT_PROFILE
from ..keys.files import load_pseudonym_secret
from ..ledger import open_ledger
from ..mapping.derive import Derivation
from .common import GatewayContext, echo_json, interactive, pass_gateway, site_overrides, wide_console

# rich is imported where it draws: `deidentify --json` (cron, benchmarks) never pays for it.


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for de-identified files (patient/study/series/instance).")
@click.option("--profile", "profile_name", default=None,
              help=f"Profile name or .toml path (default: config, else {DEFAULT_PROFILE}).")
@click.option("--option", "options", multiple=True, help="Add a PS3.15 option, e.g. retain-uids (repeatable).")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@pass_gateway
def deidentify(gw: GatewayContext, sources: tuple[Path, ...], output: Path, profile_name: str | None,
               options: tuple[str, ...], workers: int, as_json: bool) -> None:
    """De-identify the DICOM files under SOURCES into OUTPUT (sources are never modified)."""
    from ..mapping.sync import WrittenStudies, record_written

    config = gw.config()
    attr, private = site_overrides(gw)
    spec = RunSpec(
        profile=profile_name or config.profile, options=tuple(config.options) + options,
        site_overrides=attr, site_private_keep=private, output=output, quarantine=config.home.quarantine,
        keep_copies=config.quarantine_copies, secret=load_pseudonym_secret(config.home), site_id=config.site_id,
    )
    written = WrittenStudies()
    if interactive() and not as_json:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("de-identifying: {task.completed} files"), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task("deid", total=None)
            summary = run(sources, spec, workers=workers, progress=lambda n: bar.update(task, completed=n),
                          on_file=written.on_file)
    else:
        summary = run(sources, spec, workers=workers, on_file=written.on_file)
    data = summary.as_dict()
    data["quarantine"] = str(config.home.quarantine)
    with open_ledger(config.home.state_db) as ledger:  # the audit trail: counts only, no values
        ledger.record_event("deidentify", "deidentify", "ok" if not data["quarantined"] else "partial",
                            {k: data[k] for k in ("profile", "options", "seen", "released", "written", "duplicates",
                                                  "quarantined", "quarantined_by_reason", "output")})
        # the mapping, as `run` records it: `mapping lookup` answers for what was just written
        record_written(ledger, config.home, Derivation.for_plan(spec.plan(), spec.secret, spec.site_id), written)
    if as_json:
        echo_json(data)
        return
    from rich.table import Table

    console = wide_console()
    rate = data["seen"] / data["seconds"] if data["seconds"] else 0.0
    console.print(f"De-identified {data['released']} of {data['seen']} files with profile {data['profile']} "
                  f"({data['patients']} patients, {data['studies']} studies, {data['series']} series; "
                  f"{rate:.0f} files/s) into {data['output']}: {data['written']} files written"
                  + (f", {data['duplicates']} duplicates of a released instance" if data["duplicates"] else ""))
    if data["quarantined"]:
        table = Table(title=f"Quarantined ({data['quarantine']})")
        table.add_column("reason")
        table.add_column("files", justify="right")
        for reason, count in data["quarantined_by_reason"].items():
            table.add_row(reason, str(count))
        console.print(table)


COMMANDS = [deidentify]
