"""``sfr-gateway profile show``: what a de-identification profile does to each attribute, and why."""

from __future__ import annotations

from typing import Any

import click

from ..deid.describe import describe, to_markdown
from ..deid.profile import DEFAULT_PROFILE, compile_plan, load_profile
from .common import GatewayContext, echo_json, pass_gateway, site_overrides, wide_console


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
    from rich.table import Table

    attr: tuple[dict[str, Any], ...] = ()
    private: tuple[dict[str, Any], ...] = ()
    default = DEFAULT_PROFILE
    if gw.home.config.is_file():
        attr, private = site_overrides(gw)
        default = gw.config().profile
    prof = load_profile(name or default, options=options, site_overrides=list(attr), site_private_keep=list(private))
    info = describe(compile_plan(prof))
    if fmt == "json":
        echo_json(info)
        return
    if fmt == "markdown":
        click.echo(to_markdown(info), nl=False)
        return
    console = wide_console()
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


COMMANDS = [profile]
