"""The central host's site registry: which minisign key may sign batches for which site.

``central open`` takes the key from here, by the site the signature's trusted comment names,
and a key is registered for one site only: a batch signed with site A's key that claims site B
is refused (before issue 19 the operator passed ``--site-key`` and the site claimed in the
batch was believed). A site may hold two keys while it rotates its signing key
(``site add --also``); remove the old one once its last batch has arrived.

Stored in ``CENTRAL_HOME/sites.json`` (format ``sfr-central-sites/1``), written atomically
(temp, fsync, rename) under a lock, mode 0644: public keys are not secret, but who may write
the file decides which batches open (see ``home.CentralHome.check``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto.sign import PublicKey, key_id_hex
from ..errors import ConfigError, InputError, KeyFileError
from ..home.fsutil import atomic_write_text
from .home import CentralHome

FORMAT = "sfr-central-sites/1"
SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")  # the gateway's rule (deid.pseudonym.PseudonymKeys)


@dataclass(frozen=True)
class SiteKey:
    """One registered key of one site."""

    site: str
    key: PublicKey
    added: str

    @property
    def key_id(self) -> str:
        return key_id_hex(self.key.key_id)

    def as_dict(self) -> dict[str, str]:
        return {"site": self.site, "key_id": self.key_id, "public_key": self.key.to_base64(), "added": self.added}


class SiteRegistry:
    """A read-only view of the registered sites (``load`` it, or build one with ``of``)."""

    def __init__(self, entries: Sequence[SiteKey]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def of(cls, keys: Mapping[str, PublicKey | Sequence[PublicKey]]) -> SiteRegistry:
        """An in-memory registry (tests, a program that keeps its keys elsewhere)."""
        entries = []
        for site, value in keys.items():
            for key in [value] if isinstance(value, PublicKey) else value:
                entries.append(SiteKey(_site(site), key, ""))
        return cls(entries)

    @classmethod
    def load(cls, home: CentralHome) -> SiteRegistry:
        """The registry of ``home`` (empty when none was written yet); refused if writable by others."""
        home.check()
        try:
            text = home.sites.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the site registry {home.sites}: {exc}") from None
        return cls(_parse(text, home.sites))

    def __iter__(self) -> Iterator[SiteKey]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys_for(self, site: str) -> list[PublicKey]:
        return [e.key for e in self._entries if e.site == site]

    def site_of(self, key_id: bytes) -> str | None:
        """The site a key id is registered for, if any."""
        return next((e.site for e in self._entries if e.key.key_id == key_id), None)


def _site(site: str) -> str:
    if not isinstance(site, str) or not SITE_ID.match(site):
        raise InputError(f"site id {site!r}: 1-24 letters, digits, '-' or '_', starting with a letter or digit")
    return site


def _parse(text: str, where: Path) -> list[SiteKey]:
    try:
        doc = json.loads(text)
        if doc.get("format") != FORMAT or not isinstance(doc.get("sites"), list):
            raise ValueError
        entries = [SiteKey(_site(e["site"]), PublicKey.parse(e["public_key"]), str(e.get("added", "")))
                   for e in doc["sites"]]
    except (ValueError, KeyError, TypeError, AttributeError, InputError, KeyFileError):
        raise ConfigError(f"the site registry {where} is not a {FORMAT} file: restore it from a backup") from None
    return entries


def parse_public_key(value: str) -> PublicKey:
    """A site's minisign public key (its ``.pub`` file, or the base64 line), checked.

    Beyond the format: the 32 bytes must be a canonical encoding of a point of Ed25519 of large
    order (a small-order "key" verifies signatures that prove nothing).
    """
    path = Path(value)
    key = PublicKey.load(path) if path.is_file() else PublicKey.parse(value)
    if not ed25519_point_ok(key.key):
        raise KeyFileError("not a usable Ed25519 public key (not a curve point, or of small order)")
    return key


def add_site(home: CentralHome, site: str, key: PublicKey, *, also: bool = False) -> tuple[SiteKey, bool]:
    """Register ``key`` for ``site``. Returns (entry, whether anything changed).

    Refused: a key already registered for another site; a second key for a site unless ``also``.
    """
    _site(site)
    with _locked(home):
        entries = list(SiteRegistry.load(home))
        for e in entries:
            if e.key.key_id == key.key_id or e.key.key == key.key:
                if e.site == site and e.key == key:
                    return e, False
                raise InputError(f"key {key_id_hex(key.key_id)} is already registered for site {e.site}: "
                                 "a key signs for one site only")
        current = [e for e in entries if e.site == site]
        if current and not also:
            raise InputError(f"site {site} already has key {current[0].key_id}: to add a second key (a rotation) "
                             f"use --also; to replace it, `central site remove {site}` first")
        entry = SiteKey(site, key, dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"))
        _write(home, [*entries, entry])
    return entry, True


def remove_site(home: CentralHome, site: str, key_id: str | None = None) -> list[SiteKey]:
    """Remove a site (every key), or one key of it; returns what was removed (InputError if nothing)."""
    with _locked(home):
        entries = list(SiteRegistry.load(home))
        gone = [e for e in entries if e.site == site and (key_id is None or e.key_id == key_id.upper())]
        if not gone:
            what = f"key {key_id} of site {site}" if key_id else f"site {site}"
            raise InputError(f"{what} is not registered")
        _write(home, [e for e in entries if e not in gone])
    return gone


def _write(home: CentralHome, entries: list[SiteKey]) -> None:
    doc: dict[str, Any] = {"format": FORMAT, "sites": [e.as_dict() for e in entries]}
    atomic_write_text(home.sites, json.dumps(doc, indent=2, sort_keys=True) + "\n", 0o644)


@contextlib.contextmanager
def _locked(home: CentralHome) -> Iterator[None]:
    home.ensure()
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # changes are rare and short: wait for the other one
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- Ed25519 point check

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int] | None:
    """RFC 8032 5.1.3: the affine point of a 32-byte encoding, or None when it is not one."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P)


def ed25519_point_ok(raw: bytes) -> bool:
    """True for a canonical point whose 8-multiple is not the identity (large order)."""
    point = _decode_point(raw) if len(raw) == 32 else None
    if point is None:
        return False
    for _ in range(3):
        point = _add(point, point)
    return point != (0, 1)

