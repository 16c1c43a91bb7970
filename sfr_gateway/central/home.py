"""The central host's own folder (not a gateway HOME): its site registry, settings and identity.

Layout of ``CENTRAL_HOME`` (``--central-home``, else ``$SFR_CENTRAL_HOME``, else
``$XDG_DATA_HOME/sfr-central`` or ``~/.local/share/sfr-central``)::

    sites.json     the registered sites and their minisign public keys (0644, atomic writes)
    config.toml    optional: [open] limits (below); absent means the defaults
    central.key    optional: the age identity (0600) ``central open`` uses without --identity
    sites.lock     serialises changes to sites.json

The folder is created 0700. Whoever can write ``sites.json`` decides which keys may sign
batches, so it and the folder are refused when group or others can write them (exit 4).
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, KeyFileError
from ..home.config import data_folder

ENV_CENTRAL_HOME = "SFR_CENTRAL_HOME"

GiB = 1024**3


def default_central_home() -> Path:
    """``$SFR_CENTRAL_HOME``, else the platform data directory's ``sfr-central``."""
    return data_folder(ENV_CENTRAL_HOME, "sfr-central")


@dataclass(frozen=True)
class OpenLimits:
    """What one batch may unpack to (``[open]`` of CENTRAL_HOME/config.toml).

    The manifest is signed by the site, but a site's key can be stolen and a site's software can
    be wrong: these bound what any batch can cost the central host before a byte is unpacked.
    """

    max_unpacked_bytes: int = 64 * GiB
    """Sum of the file sizes in the manifest. A site splits studies above ``[batch] max_bytes``
    (2 GiB by default), so 64 GiB leaves room for large series and refuses nothing real."""
    max_files: int = 200_000
    """Files in one batch (a CT study is a few thousand slices)."""
    max_ratio: int = 100
    """Unpacked bytes per byte of the .age file: CT compresses about 1.75:1, a zstd bomb 10,000:1."""
    reserve_bytes: int = 1 * GiB
    """Free space left on the output's file system after the copy and the unpacked files."""

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> OpenLimits:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"central config: unknown [open] keys {unknown}; known: {sorted(known)}")
        values = {}
        for name, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"central config: open.{name} must be a whole number >= 0")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class CentralHome:
    """Paths of a central host's folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def sites(self) -> Path:
        return self.root / "sites.json"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def identity(self) -> Path:
        return self.root / "central.key"

    @property
    def lock(self) -> Path:
        return self.root / "sites.lock"

    def ensure(self) -> None:
        """Create the folder (0700) if missing; refuse it when group or others can write it."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.check()

    def check(self) -> None:
        """Refuse a folder or registry that group or others can write (anyone could add a key)."""
        for path, fix in ((self.root, "go-w"), (self.sites, "644")):
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                continue
            if stat.S_IMODE(mode) & 0o022:
                raise KeyFileError(f"{path} is writable by group or others: anyone could register a site key "
                                   f"(run: chmod {fix} {path})")

    def limits(self) -> OpenLimits:
        """``[open]`` of config.toml, or the defaults when there is none."""
        try:
            raw = tomllib.loads(self.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return OpenLimits()
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"central config: cannot read {self.config}: {exc}") from None
        unknown = sorted(set(raw) - {"open"})
        if unknown:
            raise ConfigError(f"central config: unknown sections {unknown}; known: ['open']")
        section = raw.get("open", {})
        if not isinstance(section, dict):
            raise ConfigError("central config: [open] must be a table")
        return OpenLimits.from_config(section)
