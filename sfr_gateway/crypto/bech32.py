"""Bech32 (BIP 173 checksum) without the 90-character limit, as age uses it for keys.

Strings are all lowercase or all uppercase; the checksum is computed over the lowercase form.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_REVERSE = {c: i for i, c in enumerate(CHARSET)}


class Bech32Error(ValueError):
    """The string is not valid Bech32 (bad character, case, separator or checksum)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        if value >> from_bits:
            raise Bech32Error("bech32: value out of range")
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise Bech32Error("bech32: non-zero or excess padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp`` (returned in ``hrp``'s case)."""
    upper = hrp.isupper()
    hrp_l = hrp.lower()
    words = _convert_bits(data, 8, 5, pad=True)
    poly = _polymod(_hrp_expand(hrp_l) + words + [0] * 6) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    text = hrp_l + "1" + "".join(CHARSET[w] for w in words + checksum)
    return text.upper() if upper else text


def decode(text: str) -> tuple[str, bytes]:
    """Return ``(hrp, data)`` with ``hrp`` lowercased; raise Bech32Error when invalid."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("bech32: mixed case")
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise Bech32Error("bech32: invalid character")
    lower = text.lower()
    pos = lower.rfind("1")
    if pos < 1 or pos + 7 > len(lower):
        raise Bech32Error("bech32: missing separator or checksum")
    hrp = lower[:pos]
    try:
        words = [_REVERSE[c] for c in lower[pos + 1 :]]
    except KeyError:
        raise Bech32Error("bech32: invalid data character") from None
    if _polymod(_hrp_expand(hrp) + words) != 1:
        raise Bech32Error("bech32: bad checksum")
    return hrp, bytes(_convert_bits(words[:-6], 5, 8, pad=False))
