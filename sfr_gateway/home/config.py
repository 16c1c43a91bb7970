"""Immutable settings read from HOME/config.toml, and the paths that make up HOME.

HOME layout::

    config.toml     settings, written by ``init`` with commented defaults
    keys/           0700; pseudonym.key, site-signing.key (0600), site-signing.pub
    state.db        the SQLite ledger (WAL)
    quarantine/     refused files' reasons (and copies only if configured)
    outbox/         encrypted, signed batches waiting for upload
    incoming/       instances received over DICOM (``listen``, ``pull``), scanned by ``run``
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

ENV_HOME = "SFR_GATEWAY_HOME"
DEFAULT_DESTINATION_DIRNAME = "dropbox"


def default_home() -> Path:
    """HOME from ``$SFR_GATEWAY_HOME``, else the platform data directory."""
    return data_folder(ENV_HOME, "sfr-gateway")


def data_folder(env_var: str, name: str) -> Path:
    """``$<env_var>``, else ``name`` in the platform data directory (``$XDG_DATA_HOME`` or
    ``~/.local/share``)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / name


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
    issuers: tuple[str, ...] = ()  # [site] issuers: how a consent recorded without an issuer resolves
    without_patient_id: str = "hold"  # instances without a Patient ID: "hold" (never released) or "release"


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


# [batch] image_compression: how released images travel (deid.recode.CODECS, plus "none").
IMAGE_COMPRESSIONS = ("jpeg-ls", "none")
DEFAULT_IMAGE_COMPRESSION = "jpeg-ls"  # chosen from measurement: README "Uplink" (issue 20)


_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 1-16 printable ASCII characters, no backslash (PS3.5 AE)


def check_ae_title(value: Any, key: str, empty_ok: bool = False) -> str:
    """A valid AE title (stripped), or ConfigError naming ``key``."""
    text = str(value if value is not None else "").strip()
    if not text and empty_ok:
        return ""
    if not _AE_TITLE.match(text):
        raise ConfigError(f"config: {key} must be an AE title: 1 to 16 printable ASCII characters, no backslash")
    return text


def whole_number(table: dict[str, Any], where: str, key: str, default: int, lo: int, hi: int) -> int:
    """``table[key]`` (or ``default``) checked to be a whole number from ``lo`` to ``hi``, else a
    ConfigError naming ``where.key``; every section of the config reads its numbers through it."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"config: {where}.{key} must be a whole number from {lo} to {hi}")
    return value


@dataclass(frozen=True)
class DicomSettings:
    """The gateway's own DICOM node (``[dicom]``): what ``listen`` accepts and where it stores.

    ``allowed_aes`` is required to listen: an association from any other calling AE title is
    rejected. ``allowed_hosts`` (addresses or networks) further restricts where it may come from.
    """

    ae_title: str = "SFR_GATEWAY"
    port: int = 11112
    bind: str = "0.0.0.0"  # noqa: S104 - a DICOM node must be reachable by the PACS; allowed_aes/hosts guard it
    allowed_aes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    incoming: str = ""  # empty: HOME/incoming
    keep_released_days: int = 7  # -1: never remove received files
    max_associations: int = 10
    timeout_seconds: int = 60
    check_called_ae: bool = True
    tls_certificate: str = ""
    tls_key: str = ""
    tls_ca: str = ""


@dataclass(frozen=True)
class PacsSettings:
    """The PACS that ``pull`` queries (``[pacs]``): C-FIND, then C-MOVE to our node or C-GET."""

    host: str = ""
    port: int = 104
    called_ae: str = ""
    calling_ae: str = ""  # empty: [dicom] ae_title
    move_destination: str = ""  # empty: [dicom] ae_title
    retrieve: str = "move"
    max_studies: int = 50
    timeout_seconds: int = 60
    issuer: str = ""  # the issuer of this PACS's Patient IDs when its answers carry none
    tls: bool = False
    tls_ca: str = ""
    tls_certificate: str = ""
    tls_key: str = ""


def _dicom(raw: dict[str, Any]) -> DicomSettings:
    table = raw.get("dicom", {})
    if not isinstance(table, dict):
        raise ConfigError("config: [dicom] must be a table")
    hosts = _strs(table.get("allowed_hosts", []), "dicom.allowed_hosts")
    import ipaddress

    for host in hosts:
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ConfigError(f"config: dicom.allowed_hosts: {host!r} is not an IP address or network") from None
    return DicomSettings(
        ae_title=check_ae_title(table.get("ae_title", "SFR_GATEWAY"), "dicom.ae_title"),
        port=whole_number(table, "dicom", "port", 11112, 1, 65535),
        bind=str(table.get("bind", "0.0.0.0")),  # noqa: S104
        allowed_aes=tuple(check_ae_title(a, "dicom.allowed_aes")
                          for a in _strs(table.get("allowed_aes", []), "dicom.allowed_aes")),
        allowed_hosts=hosts,
        incoming=str(table.get("incoming", "")),
        keep_released_days=whole_number(table, "dicom", "keep_released_days", 7, -1, 36500),
        max_associations=whole_number(table, "dicom", "max_associations", 10, 1, 1000),
        timeout_seconds=whole_number(table, "dicom", "timeout_seconds", 60, 1, 86400),
        check_called_ae=bool(table.get("check_called_ae", True)),
        tls_certificate=str(table.get("tls_certificate", "")),
        tls_key=str(table.get("tls_key", "")),
        tls_ca=str(table.get("tls_ca", "")),
    )


def _pacs(raw: dict[str, Any]) -> PacsSettings:
    table = raw.get("pacs", {})
    if not isinstance(table, dict):
        raise ConfigError("config: [pacs] must be a table")
    retrieve = table.get("retrieve", "move")
    if retrieve not in ("move", "get"):
        raise ConfigError('config: pacs.retrieve must be "move" (C-MOVE to our listener) or "get" (C-GET)')
    return PacsSettings(
        host=str(table.get("host", "")),
        port=whole_number(table, "pacs", "port", 104, 1, 65535),
        called_ae=check_ae_title(table.get("called_ae", ""), "pacs.called_ae", empty_ok=True),
        calling_ae=check_ae_title(table.get("calling_ae", ""), "pacs.calling_ae", empty_ok=True),
        move_destination=check_ae_title(table.get("move_destination", ""), "pacs.move_destination", empty_ok=True),
        retrieve=retrieve,
        max_studies=whole_number(table, "pacs", "max_studies", 50, 1, 100000),
        timeout_seconds=whole_number(table, "pacs", "timeout_seconds", 60, 1, 86400),
        issuer=str(table.get("issuer", "")),
        tls=bool(table.get("tls", False)),
        tls_ca=str(table.get("tls_ca", "")),
        tls_certificate=str(table.get("tls_certificate", "")),
        tls_key=str(table.get("tls_key", "")),
    )


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


def _image_compression(batch: dict[str, Any]) -> str:
    value = batch.get("image_compression", DEFAULT_IMAGE_COMPRESSION)
    if value not in IMAGE_COMPRESSIONS:
        raise ConfigError("config: batch.image_compression must be " + " or ".join(f'"{v}"' for v in IMAGE_COMPRESSIONS))
    return str(value)


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
    image_compression: str = DEFAULT_IMAGE_COMPRESSION
    quarantine_copies: bool = False
    keep_sent: bool = False
    dicom: DicomSettings = DicomSettings()
    pacs: PacsSettings = PacsSettings()
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def incoming(self) -> Path:
        """Where instances received over DICOM land (``[dicom] incoming``, default HOME/incoming)."""
        return Path(self.dicom.incoming).absolute() if self.dicom.incoming else self.home.root / "incoming"

    def default_sources(self) -> tuple[Path, ...]:
        """What ``run`` and ``scan`` read when given no folder: the exports, and the incoming
        folder once the listener or ``pull`` has created it."""
        incoming = self.incoming
        return (*self.exports, incoming) if incoming.is_dir() and incoming not in self.exports else self.exports

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


def flag(table: dict[str, Any], where: str, key: str, default: bool = False) -> bool:
    """``table[key]`` (or ``default``) checked to be true or false, else a ConfigError naming
    ``where.key``."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config: {where}.{key} must be true or false")
    return value


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
    no_pid = con.get("without_patient_id", "hold")
    if no_pid not in ("hold", "release"):
        raise ConfigError('config: consent.without_patient_id must be "hold" or "release"')
    issuers = tuple(i.strip() for i in _strs(site.get("issuers", []), "site.issuers"))
    if any(not i or len(i) > 64 for i in issuers):
        raise ConfigError("config: site.issuers must be non-empty Issuer of Patient ID values (at most 64 characters)")
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
        consent=ConsentPolicy(mode=mode, delay_days=delay, issuers=issuers, without_patient_id=no_pid),
        transport=dict(raw.get("transport", {})),
        batch_max_bytes=int(batch.get("max_bytes", 2 * 1024**3)),
        zstd=_zstd(batch),
        image_compression=_image_compression(batch),
        keep_sent=flag(batch, "batch", "keep_sent"),
        quarantine_copies=bool(raw.get("quarantine", {}).get("keep_copies", False)),
        dicom=_dicom(raw),
        pacs=_pacs(raw),
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
# The Issuer of Patient ID values the exports carry (e.g. ["IPP-CHU-X"]). Optional: a consent
# recorded without an issuer resolves to the one issuer the index holds the Patient ID under;
# declared issuers let it resolve before the first scan and keep other issuers out.
issuers = []

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
# Instances without a Patient ID cannot be matched to any consent: "hold" (never released, counted
# by scan, status and coverage) or "release" (released without a consent check: the site's
# documented choice, e.g. phantoms; each such study gets its own pseudonym).
without_patient_id = "hold"

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
# Delivered batches are removed from the outbox once the destination has confirmed all of them
# (a tus server's claim alone never counts); true keeps them (in outbox/, for a local archive).
# keep_sent = false
# How released images travel. "jpeg-ls" (the default, README "Uplink"): native pixel data is
# re-encoded as JPEG-LS Lossless (every pixel value decodes bit for bit; central open checks each
# file's pixel digest): 0.18 of the pixel bytes on the uplink on real CT against 0.40 with zstd
# alone, for 2.75 times the CPU of `run` (in its workers). "none": the pixel bytes go as they are,
# streamed from the source. Files already compressed are never re-encoded.
image_compression = "{DEFAULT_IMAGE_COMPRESSION}"
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

[log]
# HOME/logs/sfr-gateway.log, timestamped, rotated at max_bytes with `backups` old files kept.
# syslog = true also sends warnings and errors to syslog (journald reads /dev/log too).
# max_bytes = 10485760
# backups = 5
# syslog = false
# syslog_address = "/dev/log"     # or "host:514" (UDP)
# syslog_facility = "daemon"

[monitoring]
# After each run: HOME/metrics/sfr_gateway.prom (Prometheus textfile) and, if set, an HTML status
# page. The thresholds are those of `sfr-gateway status --check` (README: Monitoring).
# metrics = true
# metrics_file = ""
# status_page = ""                # e.g. "status.html" (relative to HOME) or an absolute path
# warn_after_hours = 26           # no successful run for this long: WARNING
# critical_after_hours = 72       # ... CRITICAL
# withdrawal_warn_hours = 24      # a withdrawal request not delivered for this long: WARNING
# withdrawal_critical_hours = 72  # ... CRITICAL
# quarantine_is_warning = false

[alerts]
# An e-mail and/or a webhook when a run ends badly. Secrets only in 0600 files.
# when = ["failed", "undelivered", "recovered"]
# email_to = ["pacs-admin@example.org"]
# email_from = ""
# smtp_host = "localhost"
# smtp_port = 25
# smtp_starttls = false
# smtp_user = ""
# smtp_password_file = ""
# webhook_url = ""
# webhook_token_file = ""

[dicom]
# The gateway as a DICOM node: `sfr-gateway listen` (C-STORE and C-ECHO SCP). Enter ae_title,
# this host's address and port in the PACS as the destination ("send to node") of the research
# routing rule. Only the calling AE titles listed in allowed_aes may send (required to listen).
# ae_title = "SFR_GATEWAY"
# port = 11112
# bind = "0.0.0.0"
# allowed_aes = ["PACS_AE"]
# Optionally, only from these addresses or networks, e.g. ["10.1.2.3", "10.1.0.0/16"].
# allowed_hosts = []
# Received instances land here (atomically, 0600) and `run` scans it: "" = HOME/incoming.
# incoming = ""
# Received files whose batch the destination acknowledged are removed after this many days
# (-1: never). Files not released stay.
# keep_released_days = 7
# max_associations = 10
# timeout_seconds = 60
# Reject associations whose called AE title is not ae_title.
# check_called_ae = true
# DICOM TLS (PS3.15 Annex B.9): the site's certificate and key; with tls_ca, senders must
# present a certificate signed by it.
# tls_certificate = "/etc/sfr-gateway/dicom.pem"
# tls_key = "/etc/sfr-gateway/dicom.key"
# tls_ca = ""

[pacs]
# The PACS `sfr-gateway pull` queries (C-FIND, study and series level) for the consented
# patients' eligible studies, then retrieves only those into the incoming folder.
# host = "pacs.example.org"
# port = 104
# called_ae = "PACS_AE"
# Our AE title towards the PACS ("" = [dicom] ae_title).
# calling_ae = ""
# "move": C-MOVE to move_destination ("" = [dicom] ae_title; the PACS must know its address and
# port, and `listen` must run, or pull starts it for the duration). "get": C-GET on the query
# association (no listener needed; the PACS must support it).
# retrieve = "move"
# move_destination = ""
# At most this many studies retrieved per pull; the rest wait for the next one.
# max_studies = 50
# timeout_seconds = 60
# The issuer of this PACS's Patient IDs, used when its answers carry no IssuerOfPatientID.
# issuer = ""
# tls = false
# tls_ca = ""
# tls_certificate = ""
# tls_key = ""
"""
