"""Walk every element of a DICOM file at every depth, with the text decoded as the file says.

This walker is the verifier's own: it does not use the de-identification engine. For each element
it yields an :class:`ElementView` holding the attribute path (``(0008,1140)[0].(0008,1155)``),
the VR and the candidate texts to search:

* text VRs (SH, LO, ST, LT, UC, UT, PN) are decoded with the Specific Character Set *in force*:
  the dataset's own (0008,0005), or the one inherited from the enclosing dataset when a sequence
  item has none; when the bytes are not plain ASCII they are *also* read as Latin-1 and UTF-8, so
  a value written in a character set other than the declared one is still searched;
* other string VRs (AE, AS, CS, DA, DT, TM, IS, DS, UI, UR) are read as ASCII/Latin-1;
* binary VRs (OB, OW, OD, OF, OL, OV, UN) are searched as raw bytes read as Latin-1, UTF-8 and
  UTF-16LE (NUL bytes dropped);
* binary numbers (US, SS, UL, SL, FL, FD, AT, UV, SV) cannot carry text and are not searched;
* pixel data (7FE0,0008/0009/0010) is *not* searched unless asked (``include_pixel_data``);
  it is only hashed, to pair outputs with their sources.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom import charset as dcm_charset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PersonName

TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "IS", "DS", "UI", "UR"})
BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV", "US or SS", "US or OW"})
PIXEL_TAGS = frozenset({Tag(0x7FE00008), Tag(0x7FE00009), Tag(0x7FE00010)})
_CHARSET_TAG = Tag(0x00080005)
_DELIMS = {"PN": {0x5E, 0x3D}, "ST": {0x0D, 0x0A, 0x09, 0x0C}, "LT": {0x0D, 0x0A, 0x09, 0x0C},
           "UT": {0x0D, 0x0A, 0x09, 0x0C}}


@dataclass(frozen=True)
class ElementView:
    """One element as the verifier sees it."""

    path: str
    tag: BaseTag
    keyword: str
    vr: str
    texts: tuple[str, ...]
    """Candidate decodings of the value (one for ASCII text)."""
    binary: bool
    """True when the value is raw bytes (OB, OW, UN...) rather than text."""
    in_file_meta: bool
    truncated: bool = False
    """The file ends before the value's declared length (a broken file)."""
    items: int = -1
    """For a sequence (VR SQ, no texts): its number of items; its items follow as their own views."""


@lru_cache(maxsize=8192)
def tag_str(tag: int) -> str:
    """``(gggg,eeee)`` in upper-case hex."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@lru_cache(maxsize=8192)
def _public_keyword(tag: int) -> str:
    return keyword_for_tag(tag) or "unknown"


def keyword_of(tag: BaseTag, ds: Dataset | None = None) -> str:
    """The dictionary keyword; ``[CREATOR]xx`` for a private element; ``unknown`` otherwise."""
    if tag.is_private:
        if tag.is_private_creator:
            return "PrivateCreator"
        creator = "?"
        if ds is not None:
            item = ds.get_item(Tag(tag.group, tag.element >> 8), keep_deferred=True)
            if item is not None and item.value:
                value = item.value
                creator = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                creator = creator.strip(" \x00")
        return f"[{creator}]{tag.element & 0xFF:02X}"
    return _public_keyword(tag)


def _vr_of(elem: DataElement | RawDataElement) -> str:
    vr = elem.VR
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(elem.tag))
    except KeyError:
        return "UN"


def _encodings(ds: Dataset, inherited: list[str]) -> list[str]:
    elem = ds.get_item(_CHARSET_TAG, keep_deferred=True)
    if elem is None:
        return inherited
    value: Any = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1").strip(" \x00").split("\\")
    elif isinstance(value, str):
        value = [value]
    names = [str(v).strip() for v in (value or [])]
    if not any(names):
        return inherited
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dcm_charset.convert_encodings(names)
        except Exception:  # noqa: BLE001 - unknown charset: Latin-1; raw bytes are searched anyway
            return ["iso8859"]


def _decode(raw: bytes, vr: str, encodings: list[str]) -> tuple[str, ...]:
    if raw.isascii():
        return (raw.decode("ascii"),)
    found: list[str] = []
    if vr in TEXT_VRS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found.append(dcm_charset.decode_bytes(raw, encodings, _DELIMS.get(vr, {0x5C})))
            except Exception:  # noqa: BLE001, S110 - undecodable: the Latin-1/UTF-8 readings below remain
                pass
    for codec in ("latin-1", "utf-8"):
        text = raw.decode(codec, errors="ignore")
        if text not in found:
            found.append(text)
    return tuple(found)


def binary_texts(raw: bytes) -> tuple[str, ...]:
    """Readings of raw bytes to search: Latin-1, UTF-8 and (NUL-stripped) UTF-16LE."""
    found = [raw.decode("latin-1")]
    if not raw.isascii():
        found.append(raw.decode("utf-8", errors="ignore"))
    if b"\x00" in raw:
        stripped = raw.replace(b"\x00", b"")
        if stripped:
            found.append(stripped.decode("latin-1"))
    return tuple(found)


def _str_value(value: Any) -> str:
    if isinstance(value, (list, MultiValue)):
        return "\\".join(_str_value(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    return "" if value is None else str(value)


def _view(elem: DataElement | RawDataElement, path: str, vr: str, encodings: list[str],
          meta: bool, keyword: str) -> ElementView | None:
    value = elem.value
    if isinstance(elem, RawDataElement) or isinstance(value, bytes):
        raw = value if isinstance(value, bytes) else b""
        if not raw:
            return None
        if vr in BINARY_VRS or vr not in TEXT_VRS | PLAIN_VRS:
            texts, binary = binary_texts(raw), True
        else:
            texts, binary = _decode(raw.rstrip(b" \x00"), vr, encodings), False
    else:
        text = _str_value(value)
        if not text:
            return None
        texts, binary = (text,), False
    truncated = (isinstance(elem, RawDataElement) and isinstance(value, bytes)
                 and elem.length != 0xFFFFFFFF and len(value) < elem.length)
    return ElementView(path, elem.tag, keyword, vr, texts, binary, meta, truncated)


def iter_elements(ds: Dataset, *, include_pixel_data: bool = False) -> Iterator[ElementView]:
    """Every element of ``ds`` (file meta first), depth first, as :class:`ElementView`."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "", ["iso8859"], include_pixel_data, True)
    yield from _walk(ds, "", ["iso8859"], include_pixel_data, False)


def _walk(ds: Dataset, prefix: str, inherited: list[str], pixels: bool, meta: bool) -> Iterator[ElementView]:
    encodings = _encodings(ds, inherited)
    for tag in list(ds.keys()):
        if tag in PIXEL_TAGS and not pixels:
            continue
        elem = ds.get_item(tag, keep_deferred=True)
        if elem is None:
            continue
        if isinstance(elem, RawDataElement) and elem.value is None and elem.length:
            elem = ds[tag]  # a deferred (large) value: read it now
        vr = _vr_of(elem)
        path = prefix + tag_str(tag)
        if vr == "SQ" or (isinstance(elem, RawDataElement) and elem.length == 0xFFFFFFFF):
            try:
                items = ds[tag].value
            except Exception:  # noqa: BLE001 - an unparsable sequence is searched as raw bytes
                items = None
            if isinstance(items, (Sequence, list)):
                yield ElementView(path, elem.tag, keyword_of(tag, ds), "SQ", (), False, meta, items=len(items))
                for index, item in enumerate(items):
                    if isinstance(item, Dataset):
                        yield from _walk(item, f"{path}[{index}].", encodings, pixels, meta)
                continue
            elem = ds.get_item(tag, keep_deferred=True)
            vr = _vr_of(elem)
        if vr in NUMBER_VRS:
            continue
        view = _view(elem, path, vr, encodings, meta, keyword_of(tag, ds))
        if view is not None:
            yield view


def pixel_digest(ds: Dataset) -> str | None:
    """SHA-256 of the pixel values (or None), used only to pair outputs with sources: of the
    Pixel Data bytes as stored when they are native; decoded first when they are compressed (a
    batch may carry images re-encoded losslessly, ``[batch] image_compression``: their values
    are the source's, their bytes are not). pydicom decodes, never the engine; an image that
    cannot be decoded gets no digest (it is paired by its structure, or not at all)."""
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if 0x7FE00010 in ds and syntax is not None and syntax.is_compressed:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return hashlib.sha256(ds.pixel_array.tobytes()).hexdigest()
        except Exception:  # noqa: BLE001 - no decoder for it, or damaged: no pixel key
            return None
    for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
        if tag in ds:
            value = ds[tag].value
            if isinstance(value, bytes):
                return hashlib.sha256(value).hexdigest()
    return None
