"""age X25519 keys (``age1...`` recipients, ``AGE-SECRET-KEY-1...`` identities) and raw base64.

Bech32 encodings as the age specification defines them; identity files in age-keygen's format.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import KeyFileError
from . import bech32

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


def b64encode(data: bytes) -> str:
    """Standard base64 without ``=`` padding (what age calls raw base64)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes) -> bytes:
    """Decode raw base64, rejecting padding and non-canonical encodings (as the spec requires)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("not base64") from None
    if "=" in text or "\n" in text or "\r" in text:
        raise ValueError("padded or multi-line base64")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


@dataclass(frozen=True)
class Recipient:
    """An X25519 age recipient (public key), written ``age1...``."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise KeyFileError("age recipient: a public key is 32 bytes")

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """Parse an ``age1...`` string; raise KeyFileError when it is not one."""
        text = text.strip()
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as exc:
            raise KeyFileError(f"not an age X25519 recipient (age1...): {exc}") from None
        if hrp != RECIPIENT_HRP or text != text.lower() or len(data) != 32:
            raise KeyFileError("not an age X25519 recipient (age1... with a 32-byte key)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public_key)


@dataclass(frozen=True)
class Identity:
    """An X25519 age identity (secret key), written ``AGE-SECRET-KEY-1...``. Never printed by repr."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise KeyFileError("age identity: a secret key is 32 bytes")

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity from the operating system's CSPRNG."""
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse an ``AGE-SECRET-KEY-1...`` string; raise KeyFileError (without echoing it)."""
        text = text.strip()
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error:
            raise KeyFileError("not an age X25519 identity (AGE-SECRET-KEY-1...)") from None
        if hrp != IDENTITY_HRP or text != text.upper() or len(data) != 32:
            raise KeyFileError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def to_string(self) -> str:
        """The ``AGE-SECRET-KEY-1...`` encoding (secret!)."""
        return bech32.encode(IDENTITY_HRP.upper(), self.secret)

    @property
    def recipient(self) -> Recipient:
        """The matching public recipient."""
        pub = X25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()
        return Recipient(pub)


def parse_recipients(values: Iterable[str]) -> list[Recipient]:
    """Recipients from strings (e.g. ``config.central_recipients``); KeyFileError names the bad one."""
    out = []
    for i, value in enumerate(values, 1):
        try:
            out.append(Recipient.parse(value))
        except KeyFileError as exc:
            raise KeyFileError(f"central recipient #{i}: {exc}") from None
    return out


def parse_identities(text: str) -> list[Identity]:
    """Identities of an identity file (age-keygen format: ``#`` comments, one key per line)."""
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        identities.append(Identity.parse(line))
    if not identities:
        raise KeyFileError("identity file holds no AGE-SECRET-KEY-1... line")
    return identities


def identity_file_text(identity: Identity, created: dt.datetime | None = None) -> str:
    """The identity file as age-keygen writes it: creation time, public key, secret key."""
    created = created or dt.datetime.now(dt.UTC)
    stamp = created.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"# created: {stamp}\n# public key: {identity.recipient}\n{identity.to_string()}\n"
