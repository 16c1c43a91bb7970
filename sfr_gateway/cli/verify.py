"""``sfr-gateway verify``: prove that de-identified output holds no PHI of its sources."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..errors import LeaksFoundError
from ..verify import VerifyReport, verify_outputs
from .common import echo_json, interactive

MAX_ROWS = 200


@click.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--against", "sources", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Source folder or file the output was made from (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option("--reveal", is_flag=True, help="Show the leaked tokens themselves (the report becomes PHI).")
@click.option("--include-pixel-data", is_flag=True,
              help="Also search the raw bytes of Pixel Data (off: only non-pixel binary values are searched).")
@click.option("--ignore-kind", "ignore_kinds", multiple=True, metavar="KIND",
              help="Token kind the site keeps on purpose, e.g. institution-name (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes reading files (default: one per CPU, at most 8).")
@click.option("--details", is_flag=True, help="Every finding, file by file (default: a summary, worst first).")
def verify(output: Path, sources: tuple[Path, ...], as_json: bool, reveal: bool, include_pixel_data: bool,
           ignore_kinds: tuple[str, ...], workers: int | None, details: bool) -> None:
    """Search every value of every file under OUTPUT for the PHI of the --against sources.

    Exit 0 when clean; 13 when a token, an unremapped or inconsistent UID, or a missing
    Patient Identity Removed flag is found. Never shows patient values unless --reveal.
    """
    if reveal:
        click.echo("warning: --reveal prints patient values; do not share or keep this output.", err=True)
    if interactive() and not as_json:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(f"reading {phase}", total=total)
                bar.update(tasks[phase], completed=done)

            report = verify_outputs(output, sources, include_pixel_data=include_pixel_data,
                                    ignore_kinds=ignore_kinds, workers=workers, progress=progress)
    else:
        report = verify_outputs(output, sources, include_pixel_data=include_pixel_data, ignore_kinds=ignore_kinds,
                                workers=workers)
    if as_json:
        echo_json(report.to_dict(reveal=reveal))
    else:
        render(report, reveal, details)
    if not report.clean:
        raise LeaksFoundError(
            f"{len(report.errors)} problem(s) in {len({f.file for f in report.errors})} output file(s)"
        )


SHOWN_FILES = 20  # files with errors named in the summary


def render(report: VerifyReport, reveal: bool, details: bool = False) -> None:
    """The human report: what was checked, then findings by kind (worst first) with the files
    that have errors; every finding, file by file, only with ``details``."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # a pipe or a file: keep whole paths on one line
    rate = report.output_files / report.seconds if report.seconds else 0.0
    manifests = f", {report.manifests} batch manifests" if report.manifests else ""
    console.print(
        f"Checked {report.output_files} output files ({report.dicom_outputs} DICOM, {report.paired} paired"
        f"{manifests}) against {report.source_files} source files, {sum(report.tokens.values())} tokens, "
        f"in {report.seconds:.1f} s ({rate:.0f} files/s)."
    )
    errors, warnings, infos = len(report.errors), len(report.warnings), len(report.infos)
    if report.clean:
        console.print("[green]clean[/green]: no residual PHI found"
                      + (f"; {warnings} warning(s), see below" if warnings else "")
                      + (f"; {infos} note(s) for information" if infos else "") + ".")
    if not report.findings:
        return
    _summary(console, report)
    if not details:
        console.print("Every finding, file by file: --details (all of them with --json).")
        if errors:
            console.print(f"[red]{errors} error(s)[/red], {warnings} warning(s), {infos} for information.")
        return
    _details(console, report, reveal)


def _summary(console: Console, report: VerifyReport) -> None:
    """Findings by severity, check and kind, worst first; then the files with errors."""
    table = Table(title="Findings by kind, worst first", title_justify="left")
    for col in ("severity", "check", "kind", "findings", "files"):
        table.add_column(col, justify="right" if col in ("findings", "files") else "left")
    style = {"error": "red", "warning": "yellow", "info": "dim"}
    for row in report.summary():
        table.add_row(Text(row["severity"], style=style.get(row["severity"], "")), row["check"], row["kind"],
                      str(row["findings"]), str(row["files"]))
    console.print(table)
    if report.errors:
        per_file: dict[str, list[str]] = {}
        for f in report.errors:
            per_file.setdefault(f.file, []).append(f"{f.keyword or f.path} ({f.kind})")
        worst = sorted(per_file.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        console.print(f"Files with errors ({len(worst)}), most first:")
        for file, where in worst[:SHOWN_FILES]:
            console.print(f"  {file}: {len(where)} error(s): {', '.join(dict.fromkeys(where))}", soft_wrap=True,
                          highlight=False, markup=False)
        if len(worst) > SHOWN_FILES:
            console.print(f"  ... and {len(worst) - SHOWN_FILES} more")


def _details(console: Console, report: VerifyReport, reveal: bool) -> None:
    """One small table per output file (the first MAX_ROWS findings)."""
    shown = report.findings[:MAX_ROWS]
    for file in dict.fromkeys(f.file for f in shown):  # one small table per output file, in order
        table = Table(title=Text(file, style="bold"), title_justify="left", show_header=True)
        for col in ("check", "attribute path", "keyword", "kind", "token" if reveal else "n"):
            table.add_column(col, overflow="fold")
        rows: dict[tuple[str, ...], int] = {}
        for f in shown:
            if f.file == file:
                key = (f.severity, f.check, f.path, f.keyword, f.kind) + ((f.token or "",) if reveal else ())
                rows[key] = rows.get(key, 0) + 1
        for key, count in rows.items():  # without --reveal, same-kind hits of one element are one row
            check = Text(key[1], style={"error": "red", "warning": "yellow"}.get(key[0], "dim"))  # colour = severity
            table.add_row(check, *(Text(cell) for cell in key[2:]), *(() if reveal else (str(count),)))
        console.print(table)
    if len(report.findings) > MAX_ROWS:
        console.print(f"... {len(report.findings) - MAX_ROWS} more findings: use --json for all.")
    counts = ", ".join(f"{k} {v}" for k, v in report.counts_by_check().items())
    console.print(f"[red]{len(report.errors)} error(s)[/red] (red), {len(report.warnings)} warning(s) (yellow), "
                  f"{len(report.infos)} for information; by check: {counts}")


COMMANDS = [verify]
