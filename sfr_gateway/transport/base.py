"""The destination interface: where an encrypted, signed batch goes, and the proof it arrived.

A batch is two files written by packaging: ``<batch>.age`` (the ciphertext) and
``<batch>.age.minisig`` (its detached signature). A :class:`Destination` delivers both and
returns a :class:`Receipt` only once the far side holds the complete ciphertext. Progress
that must survive the death of the process (a tus upload URL and its offset) is kept in an
:class:`UploadState`, implemented over the ledger by ``sfr_gateway.ledger.uploads``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from ..batch.names import signature_path  # noqa: F401  (one naming rule for batch signatures; re-exported)
from ..errors import ConfigError, IntegrityError
from ..home.fsutil import known_sha256
from ..keys.files import check_secret_file, read_secret_file

DATA = "data"
SIGNATURE = "signature"
PARTS = (DATA, SIGNATURE)

Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while the ciphertext is transferred."""


@dataclass(frozen=True)
class Receipt:
    """Proof that a destination holds a whole batch (ciphertext and signature)."""

    batch_id: str
    destination: str
    location: str
    signature_location: str
    sha256: str
    size: int
    bytes_sent: int
    resumed_from: int
    already_complete: bool
    completed_at: str

    def to_json(self) -> str:
        """Stable JSON, as stored in the ledger."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Receipt:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@runtime_checkable
class UploadState(Protocol):
    """Durable progress of uploads, keyed by batch ID and part (``data`` or ``signature``).

    ``save`` must be durable when it returns: a new process calling ``load`` sees it.
    """

    def load(self, batch_id: str, part: str = DATA) -> tuple[str, int] | None:
        """The upload URL and last confirmed offset of this part, or None if never created."""

    def save(self, batch_id: str, url: str, offset: int, part: str = DATA) -> None:
        """Record the upload URL of this part and the offset the server confirmed."""

    def note_sent(self, batch_id: str, upto: int, part: str = DATA) -> None:
        """Record, durably and BEFORE the bytes leave, that everything below ``upto`` is being sent."""

    def sent(self, batch_id: str, part: str = DATA) -> int:
        """How far this part's current upload was ever sent (at least its confirmed offset)."""

    def mark_done(self, batch_id: str, receipt: Receipt, part: str = DATA) -> None:
        """Record that the server confirmed the whole part."""

    def receipt(self, batch_id: str, part: str = DATA) -> Receipt | None:
        """The receipt recorded by ``mark_done``, or None while the part is not done."""


class Destination(ABC):
    """Somewhere batches go. Implementations: file drop folder, tus 1.0 server."""

    url: str

    @abstractmethod
    def send(
        self,
        batch_path: Path,
        batch_id: str,
        sha256: str,
        size: int,
        state: UploadState,
        *,
        progress: Progress | None = None,
    ) -> Receipt:
        """Deliver ``batch_path`` and its ``.minisig``; return once the far side holds all of it.

        Idempotent: a batch the state or the destination already holds is not sent again.
        Raises TransportError (retry later), AuthError (a human must fix credentials) or
        IntegrityError (the local batch does not match ``sha256``/``size``, or is unsigned).
        """

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Probe the destination without sending a batch (for ``status`` and enrolment).

        Returns facts safe to print; raises TransportError/AuthError like ``send`` would.
        """

    def close(self) -> None:  # noqa: B027 - an optional hook: destinations without connections keep it
        """Release connections (no-op by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class TransportSettings:
    """How to talk to the destination; from ``[transport]`` of config.toml.

    ``bandwidth_limit`` is in bytes per second (0: unlimited). In config.toml it is given as
    ``bandwidth_limit_kbps`` (kilobits per second, 1 kbit = 1000 bits) or
    ``bandwidth_limit_bytes_per_second``.
    """

    bearer_token: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    connect_timeout: float = 15.0
    timeout: float = 60.0
    retries: int = 8
    retry_budget: float = 30.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    chunk_size: int = 8 * 1024 * 1024
    bandwidth_limit: int = 0
    checksum: bool = True

    def __repr__(self) -> str:  # never show the token
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["bearer_token"]:
            shown["bearer_token"] = "***"  # noqa: S105 - the mask that hides the token
        return "TransportSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_config(cls, transport: Mapping[str, Any]) -> TransportSettings:
        """Validate ``[transport]``; unknown keys and bad values raise ConfigError."""
        known = {
            "bearer_token_file", "client_cert", "client_key", "ca_bundle", "timeout_seconds",
            "connect_timeout_seconds", "retries", "retry_budget_seconds", "backoff_seconds", "backoff_max_seconds",
            "chunk_bytes", "bandwidth_limit_kbps", "bandwidth_limit_bytes_per_second", "checksum",
        }
        unknown = sorted(set(transport) - known)
        if unknown:
            raise ConfigError(f"config: unknown [transport] keys {unknown}; known: {sorted(known)}")

        def path(key: str) -> Path | None:
            value = transport.get(key)
            if value in (None, ""):
                return None
            p = Path(str(value)).expanduser()
            if not p.is_file():
                raise ConfigError(f"config: transport.{key} {p} is not a readable file")
            return p

        def number(key: str, default: float, minimum: float) -> float:
            value = transport.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                raise ConfigError(f"config: transport.{key} must be a number >= {minimum}")
            return float(value)

        token = None
        token_file = path("bearer_token_file")
        if token_file is not None:  # a secret: refused when group/other can read it, like the keys (exit 4)
            try:
                token = read_secret_file(token_file, "transport.bearer_token_file").decode("utf-8").strip() or None
            except UnicodeDecodeError:
                raise ConfigError(f"config: transport.bearer_token_file {token_file} is not UTF-8 text") from None
            if token is None:
                raise ConfigError(f"config: transport.bearer_token_file {token_file} is empty")
        cert, key = path("client_cert"), path("client_key")
        if key is not None and cert is None:
            raise ConfigError("config: transport.client_key needs transport.client_cert")
        if key is not None:
            check_secret_file(key, "transport.client_key")
        limit = int(number("bandwidth_limit_kbps", 0, 0) * 125)
        limit = int(number("bandwidth_limit_bytes_per_second", limit, 0))
        checksum = transport.get("checksum", True)
        if not isinstance(checksum, bool):
            raise ConfigError("config: transport.checksum must be true or false")
        return cls(
            bearer_token=token,
            client_cert=cert,
            client_key=key,
            ca_bundle=path("ca_bundle"),
            connect_timeout=number("connect_timeout_seconds", 15, 0.1),
            timeout=number("timeout_seconds", 60, 0.1),
            retries=int(number("retries", 8, 0)),
            retry_budget=number("retry_budget_seconds", 30.0, 0),
            backoff_base=number("backoff_seconds", 1.0, 0),
            backoff_max=number("backoff_max_seconds", 300.0, 0),
            chunk_size=int(number("chunk_bytes", 8 * 1024 * 1024, 1024)),
            bandwidth_limit=limit,
            checksum=checksum,
        )


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (where plain http is tolerated)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_sha256(path: Path, block: int = 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def check_batch(batch_path: Path, sha256: str, size: int) -> Path:
    """Refuse to send a batch whose bytes differ from the ledger, or that is unsigned.

    Returns the signature path.
    """
    batch_path = Path(batch_path)
    try:
        actual_size = batch_path.stat().st_size
    except OSError as exc:
        raise IntegrityError(f"batch {batch_path.name}: cannot read: {exc.strerror}") from None
    if actual_size != size:
        raise IntegrityError(f"batch {batch_path.name}: {actual_size} bytes on disk, ledger says {size}")
    if (known_sha256(batch_path) or file_sha256(batch_path)) != sha256.lower():  # known: written by this run
        raise IntegrityError(f"batch {batch_path.name}: SHA-256 differs from the ledger: refusing to send")
    sig = signature_path(batch_path)
    if not sig.is_file():
        raise IntegrityError(f"batch {batch_path.name}: signature {sig.name} is missing: refusing to send")
    return sig
