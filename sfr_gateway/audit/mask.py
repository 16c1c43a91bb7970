"""Turn the engine's in-memory values into report values: masked by default, real with ``reveal``.

A masked value says what it is without showing it: its kind (from the VR), its length, its
value multiplicity and a keyed fingerprint, HMAC-SHA256(site secret, ``audit-fingerprint`` 0x00
value), cut to 12 hex digits. Equal values get equal fingerprints, so a reader can see that a
kept value is unchanged or that two files share a value, without the value; without the
site secret nobody can test a guess (a birth date, a name) against a fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydicom.multival import MultiValue

_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UR"})  # a backslash is part of the value
_KINDS = {
    "PN": "person-name", "DA": "date", "TM": "time", "DT": "datetime", "UI": "uid", "AS": "age",
    "CS": "code", "AE": "code", "DS": "number", "IS": "number", "US": "number", "SS": "number",
    "UL": "number", "SL": "number", "FL": "number", "FD": "number", "UV": "number", "SV": "number",
    "AT": "tag", "SQ": "sequence",
}
_PURPOSE = b"audit-fingerprint\x00"
_REVEAL_BYTES = 64


def kind_of(vr: str) -> str:
    """The kind of value a VR holds (``text`` for the free-text VRs, ``binary`` for OB/OW/UN...)."""
    if vr in _BINARY_VRS:
        return "binary"
    return _KINDS.get(vr, "text")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def canonical(value: Any, vr: str) -> list[str] | bytes | int | None:
    """One comparable form per value: a list of strings, raw bytes (binary VRs), or an item count (SQ).

    Raw private bytes and converted values of the same text give the same form, so their
    fingerprints match.
    """
    if value is None:
        return None
    if vr == "SQ":  # the engine gives an item count; a raw (undecoded) private sequence has no usable value
        return value if isinstance(value, int) else None if isinstance(value, (bytes, bytearray)) else len(value)
    if isinstance(value, (bytes, bytearray)):
        if vr in _BINARY_VRS:
            return bytes(value)
        value = _decode(bytes(value))
    if isinstance(value, (list, tuple, MultiValue)):
        parts = [str(v) for v in value]
    else:
        text = str(value)
        parts = [text] if vr in _SINGLE_TEXT_VRS else text.split("\\")
    parts = [p.rstrip(" \x00") for p in parts]
    return [] if parts == [""] else parts


class Masker:
    """Masks (or reveals) values with one site secret."""

    def __init__(self, secret: bytes, *, reveal: bool = False) -> None:
        self._secret = secret
        self.reveal = reveal
        self._cache: dict[bytes, str] = {}  # short values repeat across the slices of a series

    def fingerprint(self, data: bytes) -> str:
        """Keyed fingerprint of ``data`` (12 hex digits)."""
        if len(data) > 256:
            return hmac.new(self._secret, _PURPOSE + data, hashlib.sha256).hexdigest()[:12]
        hit = self._cache.get(data)
        if hit is None:
            if len(self._cache) > 65536:
                self._cache.clear()
            hit = self._cache[data] = hmac.new(self._secret, _PURPOSE + data, hashlib.sha256).hexdigest()[:12]
        return hit

    def value(self, value: Any, vr: str) -> dict[str, Any] | None:
        """The report form of one value; ``None`` when the attribute has no value (removed)."""
        form = canonical(value, vr)
        if form is None:
            return None
        kind = kind_of(vr)
        if isinstance(form, int):
            return {"kind": "sequence", "length": form, "vm": form, "fingerprint": None}
        if isinstance(form, bytes):
            out: dict[str, Any] = {"kind": kind if form else "empty", "length": len(form), "vm": 1 if form else 0,
                                   "fingerprint": self.fingerprint(form) if form else None}
            if self.reveal:
                out["value"] = "hex:" + form[:_REVEAL_BYTES].hex() + ("..." if len(form) > _REVEAL_BYTES else "")
            return out
        joined = "\\".join(form)
        out = {"kind": kind if form else "empty", "length": len(joined), "vm": len(form),
               "fingerprint": self.fingerprint(joined.encode("utf-8")) if form else None}
        if self.reveal:
            out["value"] = "" if not form else form[0] if len(form) == 1 else form
        return out
