"""``sfr-gateway deidentify`` and ``sfr-gateway profile show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..deid.folder import RunSpec, run
from ..deid.profile import DEFAULT_PROFILE, compile_plan, load_profile
from ..ledger import open_ledger
from .common import GatewayContext, echo_json, interactive, pass_gateway

# rich is imported where it draws: `deidentify --json` (cron, benchmarks) never pays for it.


def _site_overrides(gw: GatewayContext) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    overrides = gw.config().overrides
    return tuple(overrides.get("attribute", [])), tuple(overrides.get("private", []))


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
    from ..keys.files import load_pseudonym_secret
    from ..mapping.derive import Derivation
    from ..mapping.sync import WrittenStudies, record_written

    config = gw.config()
    attr, private = _site_overrides(gw)
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
    from rich.console import Console
    from rich.table import Table

    console = Console()
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


@click.group()
def profile() -> None:
    """De-identification profiles (PS3.15 Annex E)."""


@profile.command("show")
@click.argument("name", required=False)
@click.option("--option", "options", multiple=True, help="Add a PS3.15 option (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@pass_gateway
def show(gw: GatewayContext, name: str | None, options: tuple[str, ...], fmt: str) -> None:
    """What profile NAME does to each attribute, and which rule decides it."""
    from rich.console import Console
    from rich.table import Table

    from ..deid.describe import describe, to_markdown

    attr: tuple[dict[str, Any], ...] = ()
    private: tuple[dict[str, Any], ...] = ()
    default = DEFAULT_PROFILE
    if gw.home.config.is_file():
        attr, private = _site_overrides(gw)
        default = gw.config().profile
    prof = load_profile(name or default, options=options, site_overrides=list(attr), site_private_keep=list(private))
    info = describe(compile_plan(prof))
    if fmt == "json":
        echo_json(info)
        return
    if fmt == "markdown":
        click.echo(to_markdown(info), nl=False)
        return
    console = Console()
    console.print(f"Profile [bold]{info['profile']}[/] (PS3.15 {info['ps315_edition']}); options: "
                  f"{', '.join(info['options']) or 'none'}; dates: {info['dates']['mode']}")
    table = Table(show_lines=False)
    for col in ("tag", "keyword", "action", "rule"):
        table.add_column(col, overflow="fold")
    for row in info["attributes"]:
        table.add_row(row["tag"], row["keyword"] or row["name"], row["action"], row["rule"])
    console.print(table)
    rules = Table(title="Engine rules (where the table leaves a choice)", show_lines=False)
    rules.add_column("rule", overflow="fold")
    rules.add_column("what it does", overflow="fold")
    for rule in info["engine_rules"]:
        rules.add_row(rule["rule"], rule["what"])
    console.print(rules)


COMMANDS = [deidentify, profile]
