"""``sfr-gateway audit``: a dry run that reports instead of writing: by default what ``run`` would
release (same selection, consent gate and duplicate rule) and why not the rest; ``--all``: what
``deidentify`` would do to every file.

Light at import (click only): the engine, pydicom and rich load when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..home.fsutil import atomic_writer
from ..keys.files import load_pseudonym_secret
from .common import GatewayContext, pass_gateway

_REVEAL_WARNING = ("WARNING: --reveal puts REAL patient values in this report. Keep it as protected as the "
                   "source images (the file is written with mode 0600) and delete it when done.")


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "all_files", is_flag=True,
              help="Audit every file under SOURCES, ignoring the selection and the consent gate.")
@click.option("--profile", "profile_name", default=None, help="Profile name or .toml path (default: the config's).")
@click.option("--option", "options", multiple=True, help="Add a PS3.15 option, e.g. retain-uids (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file (mode 0600) instead of stdout.")
@click.option("--reveal", is_flag=True, help="Show real values instead of kind, length and keyed fingerprint.")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--no-thumbnails", is_flag=True, help="HTML: do not decode pixels (placeholders only).")
@pass_gateway
def audit(gw: GatewayContext, sources: tuple[Path, ...], all_files: bool, profile_name: str | None,
          options: tuple[str, ...], fmt: str, output: Path | None, reveal: bool, workers: int,
          no_thumbnails: bool) -> None:
    """Show what `run` would release from SOURCES (default: the exports of config.toml), what
    de-identification would do to every attribute and why, and why every other file would not be
    released. Nothing is written or sent; the HOME is left as it was."""
    from ..audit import AuditSettings, run_audit
    from ..deid.profile import compile_plan, load_profile
    from ..deid.pseudonym import PseudonymKeys
    from ..run.audit import audit_as_run

    config = gw.config()
    if all_files and not sources:
        raise click.UsageError("--all needs SOURCES")
    sources = sources or tuple(config.default_sources())
    if not sources:
        raise ConfigError("nothing to audit: give export folders, or set [site] exports in config.toml")
    overrides: dict[str, Any] = config.overrides
    plan = compile_plan(load_profile(profile_name or config.profile, options=tuple(config.options) + options,
                                     site_overrides=list(overrides.get("attribute", [])),
                                     site_private_keep=list(overrides.get("private", []))))
    keys = PseudonymKeys(load_pseudonym_secret(config.home), config.site_id)
    if reveal:
        click.echo(_REVEAL_WARNING, err=True)
    settings = AuditSettings(reveal=reveal, thumbnails=not no_thumbnails)
    show_progress = sys.stderr.isatty()

    def audit_to(fh: Any, **kwargs: Any) -> Any:
        if all_files:
            return run_audit(sources, plan, keys, fh, fmt, settings=settings, workers=workers, **kwargs)
        return audit_as_run(config, sources, plan, keys, fh, fmt, settings=settings, workers=workers, **kwargs)

    def go(fh: Any) -> None:
        if not show_progress:
            audit_to(fh)
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("audit", total=None)
            summary = audit_to(fh, progress=lambda n, total: bar.update(task, completed=n, total=total))
        t = summary.totals()
        if output is not None:
            click.echo(f"audited {t['files']} files: would release {t['would_release']} instances, {t['quarantined']} "
                       f"refused by the engine, {t['not_released']} not released, {t['flags']} flags; report: {output}",
                       err=True)

    if output is None:
        go(sys.stdout.buffer if hasattr(sys.stdout, "buffer") else _StdoutBytes())
        return
    with atomic_writer(output, mode=0o600) as fh:
        go(fh)


class _StdoutBytes:
    """Bytes to a text-only stdout (click's test runner)."""

    def write(self, data: bytes) -> int:
        click.echo(data.decode("utf-8"), nl=False)
        return len(data)


COMMANDS = [audit]
