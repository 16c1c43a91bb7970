"""Fast serialisation of a de-identified dataset: raw elements are copied as bytes.

pydicom's ``dcmwrite`` deep-copies the file meta and sends every element through
``write_data_element`` (a scratch buffer, tag and VR objects per element). After
de-identification most elements are still the ``RawDataElement`` read from the source, in the
output's own encoding, and Pixel Data is one of them: their bytes can go out as they came in.
Elements that were converted (changed values, sequences rebuilt) go through pydicom's own
``write_data_element``. The output is byte-identical to ``dcmwrite(..., enforce_file_format=True)``
(a test compares them); anything this path does not handle falls back to ``dcmwrite``.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Syntaxes whose data set is Explicit VR Little Endian: the native one and JPEG-LS Lossless, which
# deid.recode re-encodes released images into (Pixel Data then encapsulated, undefined length).
_EXPLICIT_BODY = frozenset({_EXPLICIT_LE, "1.2.840.10008.1.2.4.80"})
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def can_write_fast(ds: Dataset) -> bool:
    """True when the fast path applies: little endian, not deflated, no charset or syntax change."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts != _IMPLICIT_LE and ts not in _EXPLICIT_BODY:
        return False
    implicit = ts == _IMPLICIT_LE
    if ds.original_encoding != (implicit, True):
        return False
    return bool(ds.original_character_set == ds._character_set)


_META_TEXT = {0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI", 0x00020012: "UI", 0x00020013: "SH"}


def encode_file_meta(meta: Dataset) -> bytes | None:
    """Group 2 as ``write_file_meta_info(..., enforce_standard=True)`` writes it, for a meta of the
    usual text elements only (None otherwise: pydicom then writes it)."""
    values: dict[int, str] = {}
    for key in meta._dict:  # pydicom 3 internal: stored elements
        tag = int(key)
        if tag in (0x00020000, 0x00020001):
            continue  # pydicom recomputes the length and writes version 00 01
        vr = _META_TEXT.get(tag)
        elem = meta._dict[key]
        if elem.__class__ is RawDataElement and isinstance(elem.value, bytes) and elem.value.isascii():
            value: Any = elem.value.decode("ascii").rstrip("\x00 " if vr == "UI" else " ")  # as pydicom converts it
        else:
            value = meta[key].value
        if vr is None or not isinstance(value, str) or not value or not value.isascii():
            return None
        values[tag] = value
    if any(required not in values for required in (0x00020002, 0x00020003, 0x00020010)):
        return None  # pydicom raises for these; let it say so
    values.setdefault(0x00020012, PYDICOM_IMPLEMENTATION_UID)
    body = struct.pack("<HH2sH", 2, 1, b"OB", 0) + struct.pack("<I", 2) + b"\x00\x01"
    for number in sorted(values):
        data = values[number].encode("ascii")
        if len(data) % 2:
            data += b"\x00" if _META_TEXT[number] == "UI" else b" "
        if len(data) > 0xFFFF:
            return None
        body += struct.pack("<HH2sH", 2, number & 0xFFFF, _META_TEXT[number].encode(), len(data)) + data
    return struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


def write_fast(ds: Dataset, fp: BinaryIO) -> None:
    """Write ``ds`` (preamble, file meta, body) to ``fp``; call only when :func:`can_write_fast`."""
    implicit = str(ds.file_meta.TransferSyntaxUID) == _IMPLICIT_LE
    out = DicomFileLike(fp)
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(ds.preamble or b"\x00" * 128)
    out.write(b"DICM")
    meta = encode_file_meta(ds.file_meta)
    if meta is None:
        write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    else:
        out.write(meta)
    out.is_implicit_VR = implicit
    encodings: Any = ds.get("SpecificCharacterSet", "iso8859")
    store = ds._dict  # pydicom 3 internal: stored elements, unconverted
    write = fp.write
    for tag in sorted(store, key=int):  # int keys: BaseTag's < is Python code
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = store[tag]
        if elem.__class__ is RawDataElement and elem.is_implicit_VR == implicit and elem.is_little_endian:
            value = elem.value
            length = elem.length
            vr = elem.VR or ""
            if isinstance(value, bytes) and (length == 0xFFFFFFFF or len(value) == length) and (implicit or vr):
                undefined = length == 0xFFFFFFFF
                size = 0xFFFFFFFF if undefined else len(value)
                if implicit:
                    write(struct.pack("<HHI", tag >> 16, tag & 0xFFFF, size))
                elif vr in _LONG:
                    write(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, size))
                elif not undefined and size <= 0xFFFF and len(vr) == 2:
                    write(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), size))
                else:
                    write_data_element(out, ds.get_item(tag), encodings)
                    continue
                write(value)
                if undefined:
                    write(_DELIMITER)
                continue
        write_data_element(out, ds.get_item(tag), encodings)
