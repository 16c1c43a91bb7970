"""Immutable settings read from HOME/config.toml, and the paths that make up HOME.

HOME layout::

    config.toml     settings, written by ``init`` with commented defaults
    keys/           0700; pseudonym.key, site-signing.key (0600), site-signing.pub
    state.db        the SQLite ledger (WAL)
    quarantine/     refused files' reasons (and copies only if configured)
    outbox/         encrypted, signed batches waiting for upload
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_HOME = "SFR_GATEWAY_HOME"
DEFAULT_DESTINATION_DIRNAME = "dropbox"


def default_home() -> Path:
    """HOME from ``$SFR_GATEWAY_HOME``, else the platform data directory."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "sfr-gateway"


@dataclass(frozen=True)
class HomePaths:
    """Where everything lives inside one gateway HOME (an absolute path: a relative ``--home``
    is taken from the current directory once, so file URIs and child processes agree)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def pseudonym_key(self) -> Path:
        return self.keys / "pseudonym.key"

    @property
    def signing_key(self) -> Path:
        return self.keys / "site-signing.key"

    @property
    def signing_pub(self) -> Path:
        return self.keys / "site-signing.pub"

    @property
    def mapping_key(self) -> Path:
        return self.keys / "mapping.key"


# Selection defaults that fit the national collection (spring 2020 COVID-19 chest CT).
DEFAULT_CHEST_WORDS = (
    "THORAX", "THORACIQUE", "THORACIC", "CHEST", "POUMON", "POUMONS", "PULMONAIRE",
    "PULMONARY", "LUNG", "LUNGS", "TDM THORAX", "TAP", "THORACO", "TORAX", "TORACE",
)
DEFAULT_EXCLUDED_KINDS = (
    "localizer", "dose-report", "secondary-capture", "structured-report", "presentation-state",
)


@dataclass(frozen=True)
class SelectionRules:
    """Which instances are eligible for the national collection."""

    modalities: tuple[str, ...] = ("CT",)
    chest_words: tuple[str, ...] = DEFAULT_CHEST_WORDS
    date_from: dt.date | None = dt.date(2020, 3, 1)
    date_to: dt.date | None = dt.date(2020, 8, 31)
    excluded_kinds: tuple[str, ...] = DEFAULT_EXCLUDED_KINDS


@dataclass(frozen=True)
class ConsentPolicy:
    """``explicit``: only ``consented``; ``non-opposition``: ``informed`` for N days."""

    mode: str = "explicit"
    delay_days: int = 30


@dataclass(frozen=True)
class ZstdSettings:
    """How batches are compressed (``[batch]`` zstd_*). ``min_match``/``hash_log`` 0 = the level's own.

    The defaults (level 1 with min_match 7 and hash_log 6) cost about a quarter of the CPU of plain
    level 1 for about 3 % more bytes on generated CT (see the README's Benchmarks).
    """

    level: int = 1
    threads: int = 0
    min_match: int = 7
    hash_log: int = 6


def _zstd(batch: dict[str, Any]) -> ZstdSettings:
    def whole(key: str, default: int, lo: int, hi: int, zero_ok: bool = False) -> int:
        value = batch.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi or (zero_ok and value == 0)):
            raise ConfigError(f"config: batch.{key} must be a whole number from {lo} to {hi}"
                              + (" (or 0: the level's own)" if zero_ok else ""))
        return value

    return ZstdSettings(level=whole("zstd_level", 1, -7, 19), threads=whole("zstd_threads", 0, 0, 64),
                        min_match=whole("zstd_min_match", 7, 3, 7, zero_ok=True),
                        hash_log=whole("zstd_hash_log", 6, 6, 26, zero_ok=True))


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, read once, never mutated."""

    home: HomePaths
    site_id: str
    central_recipients: tuple[str, ...] = ()
    destination: str = ""
    exports: tuple[Path, ...] = ()
    profile: str = "sfr-covid"
    options: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    selection: SelectionRules = SelectionRules()
    consent: ConsentPolicy = ConsentPolicy()
    transport: dict[str, Any] = field(default_factory=dict)
    batch_max_bytes: int = 2 * 1024**3
    zstd: ZstdSettings = ZstdSettings()
    quarantine_copies: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_destination(self) -> str:
        """The configured destination, else the embedded default drop folder in HOME."""
        return self.destination or (self.home.root / DEFAULT_DESTINATION_DIRNAME).as_uri()


def _date(value: Any, key: str) -> dt.date | None:
    if value in (None, "", "open"):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"config: {key} must be an ISO date (YYYY-MM-DD) or \"\"") from None


def _strs(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config: {key} must be a list of strings")
    return tuple(value)


def load_config(home: Path) -> Config:
    """Read HOME/config.toml; raise ConfigError with the fix when it is missing or invalid."""
    paths = HomePaths(Path(home))
    if not paths.config.is_file():
        raise ConfigError(
            f"no gateway at {paths.root}: run `sfr-gateway --home {paths.root} init --site-id SITE` first"
        )
    try:
        raw = tomllib.loads(paths.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config: cannot read {paths.config}: {exc}") from None
    site = raw.get("site", {})
    site_id = site.get("id")
    if not isinstance(site_id, str) or not site_id:
        raise ConfigError("config: [site] id is missing")
    sel = raw.get("selection", {})
    selection = SelectionRules(
        modalities=_strs(sel.get("modalities", list(SelectionRules.modalities)), "selection.modalities"),
        chest_words=tuple(w.upper() for w in _strs(sel.get("chest_words", list(DEFAULT_CHEST_WORDS)), "selection.chest_words")),
        date_from=_date(sel.get("date_from", "2020-03-01"), "selection.date_from"),
        date_to=_date(sel.get("date_to", "2020-08-31"), "selection.date_to"),
        excluded_kinds=_strs(sel.get("excluded_kinds", list(DEFAULT_EXCLUDED_KINDS)), "selection.excluded_kinds"),
    )
    con = raw.get("consent", {})
    mode = con.get("mode", "explicit")
    if mode not in ("explicit", "non-opposition"):
        raise ConfigError('config: consent.mode must be "explicit" or "non-opposition"')
    delay = con.get("delay_days", 30)
    if not isinstance(delay, int) or delay < 0:
        raise ConfigError("config: consent.delay_days must be a whole number of days >= 0")
    deid = raw.get("deidentification", {})
    central = raw.get("central", {})
    batch = raw.get("batch", {})
    return Config(
        home=paths,
        site_id=site_id,
        central_recipients=_strs(central.get("recipients", []), "central.recipients"),
        destination=str(central.get("destination", "")),
        exports=tuple(Path(p) for p in _strs(site.get("exports", []), "site.exports")),
        profile=str(deid.get("profile", "sfr-covid")),
        options=_strs(deid.get("options", []), "deidentification.options"),
        overrides=dict(raw.get("overrides", {})),
        selection=selection,
        consent=ConsentPolicy(mode=mode, delay_days=delay),
        transport=dict(raw.get("transport", {})),
        batch_max_bytes=int(batch.get("max_bytes", 2 * 1024**3)),
        zstd=_zstd(batch),
        quarantine_copies=bool(raw.get("quarantine", {}).get("keep_copies", False)),
        raw=raw,
    )


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_config(
    site_id: str,
    recipients: list[str] | tuple[str, ...] = (),
    destination: str = "",
    exports: list[str] | tuple[str, ...] = (),
) -> str:
    """The config.toml that ``init`` writes: the given values and every default, commented."""
    return f"""# sfr-gateway configuration. Edit, then run `sfr-gateway status` to check it loads.

[site]
id = {_toml_str(site_id)}
# PACS export folders that `sfr-gateway run` scans when given none (read-only, never modified).
exports = {_toml_list(list(exports))}

[central]
# age recipients (X25519 public keys, age1...) of the central host; two during a key rotation.
recipients = {_toml_list(list(recipients))}
# Where batches go: file:///path (drop folder) or https://host/files/ (tus 1.0).
# Empty: the embedded default, a drop folder HOME/{DEFAULT_DESTINATION_DIRNAME}.
destination = {_toml_str(destination)}

[selection]
# Which instances are eligible. Dates are ISO (YYYY-MM-DD); "" leaves that end open.
modalities = ["CT"]
date_from = "2020-03-01"
date_to = "2020-08-31"
# Chest is recognised by BodyPartExamined or by these words in study/series/protocol descriptions.
chest_words = {_toml_list(list(DEFAULT_CHEST_WORDS))}
# Series kinds never released as images.
excluded_kinds = {_toml_list(list(DEFAULT_EXCLUDED_KINDS))}

[consent]
# "explicit": release only patients with status consented.
# "non-opposition": release patients informed at least delay_days ago, unless refused or withdrawn.
mode = "explicit"
delay_days = 30

[deidentification]
profile = "sfr-covid"
# Extra PS3.15 options, e.g. ["retain-device-identity"].
options = []

# Site overrides (see profiles/README.md): keep or remove an attribute, keep a private element.
# [[overrides.attribute]]
# keyword = "StationName"         # or tag = "(0008,1010)"
# action = "K"                    # K keep, X remove, Z empty, D dummy
# reason = "generic station names"
#
# [[overrides.private]]
# group = "0043"
# creator = "GEMS_PARM_01"
# element = "39"

[batch]
# A study larger than this is split into several batches.
max_bytes = {2 * 1024**3}
# zstd compression of batches. Level 1 with min_match 7 and hash_log 6 (a tiny match table: CT
# noise has few long matches, the gain is in the literals) costs about a quarter of the CPU of
# plain level 1 for ~3 % more bytes on generated CT. Set both to 0 for the level's own values.
# zstd_threads: threads compressing a batch's files (each piece of the tar its own zstd frame);
# 0 = one per CPU.
zstd_level = 1
zstd_threads = 0
zstd_min_match = 7
zstd_hash_log = 6

[transport]
# bearer_token_file = "/etc/sfr-gateway/token"
# client_cert = "/etc/sfr-gateway/client.pem"
# client_key = "/etc/sfr-gateway/client.key"
# ca_bundle = "/etc/sfr-gateway/central-ca.pem"
# timeout_seconds = 60
# retries = 8
# bandwidth_limit_kbps = 0

[quarantine]
# Keep a copy of each refused file in HOME/quarantine (it holds PHI: off by default).
keep_copies = false
"""
