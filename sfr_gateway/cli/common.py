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
from ..home.logfile import attach
from ..keys.files import check_key_permissions


@dataclass
class GatewayContext:
    """Carried in ``click.Context.obj``: the HOME, and its config loaded on first use."""

    home_arg: Path | None
    _config: Config | None = field(default=None, init=False, repr=False)

    @property
    def home(self) -> HomePaths:
        return HomePaths(self.home_arg or default_home())

    def config(self) -> Config:
        """Load config.toml and refuse to go on if key permissions are unsafe."""
        if self._config is None:
            self._config = load_config(self.home.root)
            attach(self._config.home.root)  # HOME/logs/sfr-gateway.log, when HOME can take it
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
    return (f"attention: not delivered: {failure.get('message', '?')}{more}; {_pending_words(upload)} stay "
            "pending for the next run or `sfr-gateway upload`")
