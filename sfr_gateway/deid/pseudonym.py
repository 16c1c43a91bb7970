"""Keyed pseudonyms: HMAC-SHA256(site secret, purpose || 0x00 || input), one purpose per kind.

Same secret and input give the same output on every run and machine; without the secret
nothing can be recomputed. Results are cached per distinct input (bounded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from sfr_gateway.keys.files import secret_fingerprint

if TYPE_CHECKING:
    from .plan import Plan

_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")

PURPOSE_PATIENT = "patient"
PURPOSE_UID = "uid"
PURPOSE_DATE_OFFSET = "date-offset"
PURPOSE_AUDIT_FINGERPRINT = "audit-fingerprint"  # audit/mask.py: HMAC(secret, "audit-fingerprint" 0x00 value)
#: HMAC domains the gateway derives itself: a profile's [pseudonyms] may not name one, or a
#: dummy identifier would print (part of) a UID, a date offset or an audit fingerprint.
RESERVED_PURPOSES = frozenset({PURPOSE_UID, PURPOSE_DATE_OFFSET, PURPOSE_AUDIT_FINGERPRINT})
#: What a profile purpose may look like: no 0x00 (the domain separator) and nothing to confuse.
PURPOSE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _b32(digest: bytes, length: int) -> str:
    """Upper-case RFC 4648 base32 without padding, cut to ``length`` characters."""
    return base64.b32encode(digest).decode("ascii").rstrip("=")[:length]


@dataclass(frozen=True)
class PseudonymKeys:
    """The library's key input: the 32-byte site pseudonym secret and the site id.

    Build it with ``PseudonymKeys(secret=load_pseudonym_secret(home), site_id=cfg.site_id)``.
    """

    secret: bytes = field(repr=False)
    site_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != 32:
            raise ValueError("the pseudonym secret must be exactly 32 bytes")
        if not _SITE_RE.match(self.site_id):
            raise ValueError("site id must be 1-24 characters: letters, digits, '-' or '_'")

    def fingerprint(self) -> str:
        """A short public fingerprint of the secret (never the secret itself): the same one
        ``init``, ``keys show`` and the mapping print."""
        return secret_fingerprint(self.secret)


@lru_cache(maxsize=65536)
def _digest(secret: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(secret, purpose.encode("ascii") + b"\x00" + value.encode("utf-8"), hashlib.sha256).digest()


class Pseudonymizer:
    """Keyed derivations of one site (pure functions of the keys; cached per input)."""

    def __init__(self, keys: PseudonymKeys, *, offset_range: tuple[int, int] = (-1095, -1)) -> None:
        self._secret = keys.secret
        self.site_id = keys.site_id
        lo, hi = offset_range
        if lo > hi:
            raise ValueError("date offset range is reversed")
        self._offset_range = (lo, hi)
        self._patients: dict[str, str] = {}
        self._offsets: dict[str, int] = {}

    @classmethod
    def for_plan(cls, keys: PseudonymKeys, plan: Plan | None = None) -> Pseudonymizer:
        """The one constructor the gateway uses: the keys, and the date-offset range of the
        compiled profile ``plan`` (None: the pseudonyms only, e.g. for consent requests).
        Everything that must agree with the engine (run, deidentify, audit, the mapping)
        builds its pseudonymiser here."""
        return cls(keys) if plan is None else cls(keys, offset_range=plan.offset_range)

    def digest(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256(secret, purpose || 0x00 || value)."""
        return _digest(self._secret, purpose, value)

    def patient(self, patient_key: str) -> str:
        """Site-prefixed patient pseudonym, e.g. ``SFR042-7KQ3M2XW9D4A`` (60 keyed bits)."""
        hit = self._patients.get(patient_key)
        if hit is None:
            hit = f"{self.site_id}-{_b32(self.digest(PURPOSE_PATIENT, patient_key), 12)}"
            if len(self._patients) > 65536:
                self._patients.clear()
            self._patients[patient_key] = hit
        return hit

    def identifier(self, purpose: str, value: str, max_len: int = 16) -> str:
        """A keyed identifier (accession, study ID...), base32, at most ``max_len`` chars."""
        return _identifier(self._secret, purpose, value, max(4, min(max_len, 16)))

    def uid(self, original: str) -> str:
        """``2.25.`` + decimal of the first 128 keyed bits: valid, <= 44 chars."""
        return uid_from_digest(self.digest(PURPOSE_UID, original))

    def date_offset(self, patient_key: str) -> int:
        """Per-patient offset in days, uniform in the configured range (inclusive)."""
        hit = self._offsets.get(patient_key)
        if hit is None:
            lo, hi = self._offset_range
            n = int.from_bytes(self.digest(PURPOSE_DATE_OFFSET, patient_key)[:8], "big")
            hit = lo + n % (hi - lo + 1)
            if len(self._offsets) > 65536:
                self._offsets.clear()
            self._offsets[patient_key] = hit
        return hit


@lru_cache(maxsize=65536)
def _identifier(secret: bytes, purpose: str, value: str, length: int) -> str:
    return _b32(_digest(secret, purpose, value), length)


@lru_cache(maxsize=65536)
def uid_from_digest(digest: bytes) -> str:
    """Turn a digest into a ``2.25`` UID; never a leading zero (0 itself is impossible here)."""
    value = int.from_bytes(digest[:16], "big") or 1
    return f"2.25.{value}"


def patient_key(patient_id: str, issuer: str = "", fallback: str = "") -> str:
    """Canonical patient key: ID and issuer; a per-study fallback when the ID is empty."""
    pid = patient_id.strip()
    if pid:
        return f"{pid}\x00{issuer.strip()}"
    return f"\x01{fallback}"
