"""What every command shares: the HOME it works on, its config, JSON and TTY helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import TransportError
from ..home.config import Config, HomePaths, default_home, load_config
from ..home.logfile import LogSettings, attach, file_only
from ..keys.files import check_key_permissions


@dataclass
class GatewayContext:
    """Carried in ``click.Context.obj``: the HOME, and its config loaded on first use."""

    home_arg: Path | None
    home_given: bool = False  # --home on the command line (before or after the command), not from the environment
    _config: Config | None = field(default=None, init=False, repr=False)

    @property
    def home(self) -> HomePaths:
        return HomePaths(self.home_arg or default_home())

    def config(self) -> Config:
        """Load config.toml and refuse to go on if key permissions are unsafe."""
        if self._config is None:
            self._config = load_config(self.home.root)
            # HOME/logs/sfr-gateway.log (rotated), and syslog if asked, when HOME can take it
            attach(self._config.home.root, LogSettings.from_raw(self._config.raw))
            check_key_permissions(self.home)
        return self._config


pass_gateway = click.make_pass_decorator(GatewayContext)


def echo_json(data: Any) -> None:
    """Print ``data`` as stable, indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def interactive() -> bool:
    """True when stdout and stderr are terminals (progress bars only then; never under cron)."""
    return sys.stderr.isatty() and sys.stdout.isatty()


def site_overrides(gw: GatewayContext) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """The site's profile overrides from config.toml: (attribute rules, private attributes kept)."""
    overrides = gw.config().overrides
    return tuple(overrides.get("attribute", [])), tuple(overrides.get("private", []))


def fail_if_undelivered(upload: dict[str, Any]) -> None:
    """Undelivered batches make the exit code 10 (after the report): cron and timers notice.
    They stay pending; the next run resumes them."""
    if upload.get("failed"):
        failure = upload.get("failure") or {}
        raise TransportError(f"not delivered ({failure.get('cause') or 'see the log'}): {_pending_words(upload)} "
                             "stay pending; the next run or `sfr-gateway upload` delivers them", failure.get("cause", ""))


def _pending_words(upload: dict[str, Any]) -> str:
    n = upload.get("pending", 0)
    return f"{n} batch{'' if n == 1 else 'es'}"


def not_delivered(upload: dict[str, Any]) -> str:
    """One line for stderr: what was not delivered, and why (the first failure's message, which
    names the destination and the cause), instead of a dict of batch IDs."""
    failure = upload.get("failure") or {}
    others = len(upload["failed"]) - 1
    more = f" (and {others} more item(s) not sent)" if others > 0 else ""
    return (f"not delivered: {failure.get('message', '?')}{more}; {_pending_words(upload)} stay "
            "pending for the next run or `sfr-gateway upload`")


def wide_console(file: Any = None, min_width: int = 0) -> Any:
    """A rich Console that never cuts a table: on a terminal its width (at least
    ``min_width``); redirected to a file or a pipe (``consent list > f``), as wide as the
    content needs (rich would otherwise assume 80 columns and cut IDs and paths with "…")."""
    from rich.console import Console

    if file is None and sys.stdout.isatty():
        return Console(width=max(Console().width, min_width)) if min_width else Console()
    return Console(file=file, width=10_000, soft_wrap=False, color_system=None)


def stamp(err: bool = False) -> str:
    """A timestamp to put before a line when its stream is not a terminal (cron appends the
    output to a file): ``2026-12-06T02:30:04+0100 ``; on a terminal, nothing."""
    import datetime as dt

    stream = sys.stderr if err else sys.stdout
    try:
        if stream.isatty():
            return ""
    except (AttributeError, ValueError):
        pass
    return dt.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z") + " "


def attention(text: str) -> None:
    """A line a human should read, on stderr (cron mails it), timestamped when not on a
    terminal, and kept in the log file (and syslog, when configured) as a warning."""

    file_only.warning("attention: %s", text)
    click.echo(f"{stamp(err=True)}attention: {text}", err=True)
