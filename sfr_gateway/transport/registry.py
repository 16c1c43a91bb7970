"""Which destination serves a URL: the registry by URL scheme (``file://`` drop folder, ``https://``
tus 1.0). The implementations are imported here, so the interface (``transport.base``) imports
none of them; tus (``requests``) only when a URL names it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import Destination, TransportSettings, is_loopback, redact_url
from .filedrop import FileDropDestination


def destination_for(url: str, settings: TransportSettings | Mapping[str, Any] | None = None) -> Destination:
    """The destination for ``url``: ``file:///dir`` (drop folder) or ``https://...`` (tus 1.0).

    Plain ``http://`` is accepted only for loopback hosts (a local TLS tunnel, tests).
    """
    if settings is None:
        settings = TransportSettings()
    elif not isinstance(settings, TransportSettings):
        settings = TransportSettings.from_config(settings)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"destination {redact_url(url)}: file URLs must be local (file:///dir)")
        return FileDropDestination(Path(urllib.parse.unquote(parts.path)))
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        if not parts.hostname:
            raise ConfigError(f"destination {redact_url(url)}: no host")
        if parts.username or parts.password:
            raise ConfigError("destination: put credentials in [transport], not in the URL")
        from .tus import TusDestination

        return TusDestination(url, settings)
    if parts.scheme == "http":
        raise ConfigError(f"destination {redact_url(url)}: plain http is refused for non-loopback hosts; use https")
    raise ConfigError(f"destination {redact_url(url)}: unsupported scheme (use file:///dir or https://host/files/)")
