"""Date shifting by a whole number of days, keeping each value's precision and time zone.

DA: ``YYYYMMDD`` (also the old ``YYYY.MM.DD`` form, written back as ``YYYYMMDD``).
DT: ``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``: the date part moves, the rest is kept, partial
precision stays partial. TM values are unchanged by a whole-day offset. Ranges (``a-b``) and
multiple values (``a\\b``) are shifted element-wise. A value that does not parse raises
:class:`ValueError` (the engine then removes it: an unparsable date is never kept).
"""

from __future__ import annotations

import datetime as _dt
import re

_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_DAY = _dt.timedelta(days=1)


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (or range ``a-b``)."""
    value = value.strip()
    if not value:
        return value
    if "-" in value:
        return "-".join(shift_da(part, days) if part else part for part in value.split("-"))
    match = _DA.match(value)
    if not match:
        raise ValueError("not a DA value")
    y, m, d = (int(g) for g in match.groups())
    return (_dt.date(y, m, d) + days * _DAY).strftime("%Y%m%d")


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value, keeping precision, fraction and UTC offset suffix."""
    value = value.strip()
    if not value:
        return value
    if "-" in value[1:] and not _DT.match(value):
        left, _, right = value.partition("-")
        return f"{shift_dt(left, days) if left else ''}-{shift_dt(right, days) if right else ''}"
    match = _DT.match(value)
    if not match:
        raise ValueError("not a DT value")
    year, month, day, rest, tz = match.groups()
    if month is None:
        shifted = _dt.date(int(year), 7, 1) + days * _DAY
        return f"{shifted.year:04d}{tz or ''}"
    if day is None:
        shifted = _dt.date(int(year), int(month), 15) + days * _DAY
        return f"{shifted.year:04d}{shifted.month:02d}{tz or ''}"
    shifted = _dt.date(int(year), int(month), int(day)) + days * _DAY
    return f"{shifted.strftime('%Y%m%d')}{rest or ''}{tz or ''}"


def shift_multi(value: str, vr: str, days: int) -> str:
    """Shift a possibly multi-valued DA/DT string."""
    fn = shift_da if vr == "DA" else shift_dt
    return "\\".join(fn(part, days) for part in value.split("\\"))


def shift_loose(value: str, days: int) -> str:
    """Shift a date or date-time carried in a text VR (private elements TCIA marks ``o``)."""
    text = value.strip()
    if _DA.match(text):
        return shift_da(text, days)
    return shift_dt(text, days)


def shift_epoch(seconds: int, days: int) -> int:
    """Shift a date stored as an integer count of seconds (TCIA ``oi``)."""
    return seconds + days * 86400


def clamp_age(value: str, max_years: int) -> str:
    """Ages above ``max_years`` become ``(max_years+1)Y``, e.g. ``090Y`` (AS VR)."""
    text = value.strip()
    if len(text) == 4 and text[:3].isdigit() and text[3] == "Y" and int(text[:3]) > max_years:
        return f"{max_years + 1:03d}Y"
    return text
