"""``sfr-gateway listen``: the DICOM listener (C-STORE, C-ECHO), in the foreground."""

from __future__ import annotations

import signal
import sys
import threading

import click

from ..home.config import check_ae_title
from .common import GatewayContext, pass_gateway


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (default [dicom] port, 11112; 0 picks a free one and prints it).")
@click.option("--ae-title", default=None, help="Our AE title (default [dicom] ae_title, SFR_GATEWAY).")
@click.option("--allow", "allow", multiple=True, metavar="CALLING_AE",
              help="A calling AE title allowed to send (added to [dicom] allowed_aes; repeatable).")
@click.option("--bind", default=None, help="Address to listen on (default [dicom] bind, all addresses).")
@pass_gateway
def listen(gw: GatewayContext, port: int | None, ae_title: str | None, allow: tuple[str, ...],
           bind: str | None) -> None:
    """Receive instances from the PACS into the incoming folder that `run` scans.

    Runs until SIGTERM or Ctrl-C (associations in progress get 10 s to finish). Only the
    allowed calling AE titles may associate; each instance is answered success only once its
    file is durable. One line on stdout when ready: "listening on HOST:PORT as AE".
    """
    from ..dicomnet.listen import Listener, ListenSettings, serve

    config = gw.config()
    allow = tuple(check_ae_title(a, "--allow") for a in allow)
    title = check_ae_title(ae_title, "--ae-title") if ae_title else None
    settings = ListenSettings.from_config(config, port=port, ae_title=title, allow=allow, bind=bind)
    listener = Listener(config, settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def ready() -> None:
        host, bound = listener.address
        click.echo(f"listening on {host}:{bound} as {settings.ae_title}; allowed: {', '.join(settings.allowed_aes)}; "
                   f"incoming: {settings.incoming}")
        sys.stdout.flush()

    serve(listener, stop, ready=ready)


COMMANDS = [listen]
