"""The ``sfr-gateway`` command: parse, call one library function, map errors to exit codes.

Each command (or command group) lives in its own module of this package, named after it and
exposing ``COMMANDS``, a list of click commands. ``COMMAND_MODULES`` names the module of each top-level command; a module
is imported only when its command runs (or for ``--help``), so a quiet cron rescan does not pay
for pydicom, cryptography or rich.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import click

from .. import __version__
from ..errors import GatewayError, Interrupted, from_exception, is_storage_failure
from ..home import logfile
from .common import GatewayContext, stamp

COMMAND_MODULES: dict[str, str] = {
    "init": "sfr_gateway.cli.init",
    "scan": "sfr_gateway.cli.scan",
    "consent": "sfr_gateway.cli.consent",
    "deidentify": "sfr_gateway.cli.deidentify",
    "profile": "sfr_gateway.cli.profile",
    "audit": "sfr_gateway.cli.audit",
    "destination": "sfr_gateway.cli.destination",
    "central": "sfr_gateway.cli.central",
    "mapping": "sfr_gateway.cli.mapping",
    "keys": "sfr_gateway.cli.keys",
    "verify": "sfr_gateway.cli.verify",
    "run": "sfr_gateway.cli.run",
    "upload": "sfr_gateway.cli.upload",
    "status": "sfr_gateway.cli.status",
    "listen": "sfr_gateway.cli.listen",
    "quarantine": "sfr_gateway.cli.quarantine",
    "pull": "sfr_gateway.cli.pull",
    "sample": "sfr_gateway.cli.sample",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from ``COMMAND_MODULES`` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMAND_MODULES and cmd_name not in self.commands:
            for command in importlib.import_module(COMMAND_MODULES[cmd_name]).COMMANDS:
                _accept_home(command)
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


def _take_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``--home`` after the command (``sfr-gateway status --home H``), as people type it."""
    if value is None:
        return
    gw = ctx.find_object(GatewayContext)
    if gw is None:
        return
    if gw.home_given and Path(gw.home_arg or "").absolute() != value.absolute():
        raise click.UsageError(f"--home given twice, with two folders ({gw.home_arg} and {value})", ctx)
    gw.home_arg, gw.home_given = value, True


def _accept_home(command: click.Command) -> None:
    """Give the command (and each subcommand of a group) a ``--home`` of its own, once."""
    if not any(p.name == "home" for p in command.params):
        command.params.append(click.Option(
            ["--home"], type=click.Path(file_okay=False, path_type=Path), expose_value=False, is_eager=True,
            callback=_take_home, help="Gateway HOME (may also come before the command)."))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_home(sub)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SFR_GATEWAY_HOME",
    help="Gateway HOME (env SFR_GATEWAY_HOME; default: the platform data dir).",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.version_option(__version__, prog_name="sfr-gateway")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: int) -> None:
    """Site-side de-identification gateway for the SFR national chest-CT database."""
    logfile.to_stderr(logging.WARNING - 10 * min(verbose, 2))
    ctx.obj = GatewayContext(home)
    ctx.obj.home_given = ctx.get_parameter_source("home") == click.core.ParameterSource.COMMANDLINE


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the group; a GatewayError becomes its documented exit code, any
    other exception the code of its cause (``errors.from_exception``), its traceback in the log
    file (without values), not on the terminal."""
    try:
        code = cli.main(args=argv, prog_name="sfr-gateway", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:  # a command's `Exit(code)`
            return code
    except Interrupted as exc:  # a clean stop, not an error: its own words, nothing more
        logfile.file_only.warning("exit %d: %s", exc.exit_code, exc)
        click.echo(f"{stamp(err=True)}{exc}", err=True)
        return exc.exit_code
    except GatewayError as exc:
        logfile.file_only.warning("exit %d: %s", exc.exit_code, exc)
        click.echo(f"{stamp(err=True)}error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - every other failure: named by its cause, no traceback on screen
        err = from_exception(exc)
        logfile.file_only.error("%s\n%s", err, logfile.safe_traceback(exc))
        where = logfile.current()
        click.echo(f"{stamp(err=True)}error: {err}" + (f" (log: {where})" if where and not is_storage_failure(exc) else ""),
                   err=True)
        return err.exit_code
    finally:
        logfile.detach_all()
    return 0
