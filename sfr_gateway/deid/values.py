"""Element values read and written without conversion where possible (the engine's hot path).

pydicom keeps elements it has not been asked about as raw bytes (``RawDataElement``); reading a
plain ASCII value from those bytes and writing raw bytes back keeps kept elements and Pixel
Data byte for byte and skips pydicom's conversions. Anything else goes through pydicom.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue

TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE", "UR"})
MAX_LEN = {"SH": 16, "LO": 64, "CS": 16, "AE": 16, "PN": 64, "DS": 16, "IS": 12, "UI": 64}
DUMMY = {
    "PN": "ANONYMIZED", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED",
    "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED", "AE": "ANONYMIZED", "UR": "ANONYMIZED",
    "DA": "19000101", "TM": "000000.00", "DT": "19000101000000", "AS": "000Y", "DS": "0", "IS": "0",
}
NUMERIC = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
BINARY = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


def vr_of(ds: Dataset, tag: int) -> str:
    """The VR stored with the element, else the dictionary's (implicit VR), else UN."""
    raw = ds._dict[tag]  # type: ignore[index]  # pydicom 3 internal: stored element, no conversion
    vr = raw.VR
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@lru_cache(maxsize=8192)
def keyword_of(tag: int) -> str:
    """The keyword of a tag, or its (gggg,eeee) spelling."""
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) for v in value]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    return [str(value)]


def get_text(ds: Dataset, tag: int) -> str:
    """The value as text without converting the element when its raw bytes are plain ASCII."""
    raw = ds._dict[tag]  # type: ignore[index]  # pydicom 3 internal: stored element, no conversion
    if raw.__class__ is RawDataElement:
        value = raw.value
        if value is None:
            return ""
        if isinstance(value, bytes) and value.isascii() and b"\x1b" not in value:
            return value.decode("ascii").rstrip(" \x00")
    return "\\".join(_texts(ds[tag].value)).rstrip(" \x00")


def put_text(ds: Dataset, tag: int, vr: str, text: str) -> None:
    """Set a text value; raw elements get raw ASCII bytes (no conversion), others a value."""
    raw = ds._dict[tag]  # type: ignore[index]
    if raw.__class__ is RawDataElement and text.isascii():
        data = text.encode("ascii")
        if len(data) % 2:
            data += b"\x00" if vr == "UI" else b" "
        ds._dict[tag] = raw._replace(value=data, length=len(data))  # type: ignore[index]
        return
    ds[tag].value = text


def put_empty(ds: Dataset, tag: int, vr: str) -> None:
    """Give an element a zero-length value."""
    raw = ds._dict[tag]  # type: ignore[index]
    if raw.__class__ is RawDataElement:
        ds._dict[tag] = raw._replace(value=b"", length=0)  # type: ignore[index]
    elif vr == "SQ":
        ds[tag].value = []
    else:
        ds[tag].value = None if vr in NUMERIC or vr in BINARY else ""


_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def encoded_value(elem: DataElement, implicit: bool, encodings: Any) -> tuple[bytes, int] | None:
    """(value bytes, length field) of ``elem`` as ``write_data_element`` encodes it (little
    endian): a raw element with these is written back identically (see ``rawwrite``)."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_data_element(fp, elem, encodings)
    data = fp.getvalue()
    head = 8 if implicit else 12
    length = int.from_bytes(data[head - 4:head], "little")
    if length == 0xFFFFFFFF:
        return (data[head:-8], length) if data.endswith(_SEQUENCE_END) else None
    return (data[head:], length) if len(data) - head == length else None




LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


@lru_cache(maxsize=4096)
def dictionary_vr(tag: int) -> str:
    """The data dictionary's VR of a public tag when it has exactly one; "" otherwise (unknown
    tag, a VR that depends on another attribute such as ``US or SS``, or UN itself)."""
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return ""
    return "" if " or " in vr or vr == "UN" else vr


def is_empty(ds: Dataset, tag: int) -> bool:
    """Whether the element has a zero-length (or all-padding) value, without converting it."""
    raw = ds._dict[tag]  # type: ignore[index]  # pydicom 3 internal: stored element, no conversion
    value = raw.value
    if value is None:
        return True
    if value.__class__ is bytes:
        return not value.strip(b" \x00")
    if isinstance(value, (list, MultiValue)):
        return not any(str(v).strip() for v in value) if value else True
    return isinstance(value, str) and not value.strip()
