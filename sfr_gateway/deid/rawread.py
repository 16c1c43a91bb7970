"""A lean reader for the batch fast path: the header of a plain little-endian file, up to Pixel Data.

pydicom's ``dcmread`` spends most of a CT slice's header time on generality (file-like reads per
element, eager parsing of undefined-length sequences, tag objects). For the common file (128-byte
preamble, ``DICM``, explicit VR little-endian file meta, an explicit or implicit VR little-endian
dataset, Pixel Data last) this module splits the header into the same ``RawDataElement`` values
pydicom stores, in one pass over one buffer, and builds the same ``Dataset``. Anything else
(big endian, deflate, a VR it does not know, an undefined-length value that is not a sequence,
a group length that does not add up, a file meta in implicit VR...) returns None and the caller
uses pydicom, which then also says what is wrong. Values are never decoded here.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.valuerep import VR

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_VRS = frozenset(v.value.encode("ascii") for v in VR)
_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_FIRST_READ = 64 * 1024
_MAX_HEADER = 4 * 1024 * 1024
_MAX_DEPTH = 32
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")


class _Unsure(Exception):
    """Not the plain case: let pydicom read this file."""


class _Short(Exception):
    """The buffer ends before the header does: read more."""


def _header(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR bytes or None, length, value position) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Short
    group, elem = _TAG.unpack_from(buf, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, None, _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4:pos + 6]
    if vr in _LONG:
        if pos + 12 > len(buf):
            raise _Short
        if buf[pos + 6:pos + 8] != b"\0\0":
            raise _Unsure
        return tag, vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
    if vr not in _VRS:
        raise _Unsure
    return tag, vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _is_sequence(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr == b"SQ"
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False  # an unknown tag of undefined length: pydicom looks ahead, so do not guess


def _skip_sequence(buf: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Position just after the delimiter of the undefined-length sequence whose items start at ``pos``."""
    if depth > _MAX_DEPTH:
        raise _Unsure
    while True:
        tag, _, length, start = _header(buf, pos, True)
        if tag == _SEQUENCE_END:
            return start
        if tag != _ITEM:
            raise _Unsure
        if length != _UNDEFINED:
            pos = start + length
            if pos > len(buf):
                raise _Short
            continue
        pos = start
        while True:  # an undefined-length item: its elements, up to the item delimiter
            tag, vr, length, start = _header(buf, pos, implicit)
            if tag == _ITEM_END:
                pos = start
                break
            if tag >> 16 == 0xFFFE:
                raise _Unsure
            if length == _UNDEFINED:
                if not _is_sequence(tag, vr):
                    raise _Unsure
                pos = _skip_sequence(buf, start, implicit, depth + 1)
            else:
                pos = start + length
                if pos > len(buf):
                    raise _Short


def _elements(buf: bytes, pos: int, implicit: bool, group2: bool) -> tuple[dict[BaseTag, Any], int]:
    """Top-level raw elements from ``pos``: group 2 only (file meta), or up to Pixel Data.

    The loop is ``_header`` inlined: this is the per-element hot path of every file."""
    out: dict[BaseTag, Any] = {}
    size = len(buf)
    unpack_explicit, unpack_implicit, unpack_u32 = _EXPLICIT.unpack_from, _IMPLICIT.unpack_from, _U32.unpack_from
    long_vrs, vrs, raw_element = _LONG, _VRS, RawDataElement
    while True:
        if pos + 8 > size:
            raise _Short
        if implicit:
            group, elem, length = unpack_implicit(buf, pos)
            vr = None
            start = pos + 8
        else:
            group, elem, vr, length = unpack_explicit(buf, pos)
            if vr in long_vrs:
                if pos + 12 > size:
                    raise _Short
                if length:
                    raise _Unsure  # the two reserved bytes are not zero
                length = unpack_u32(buf, pos + 8)[0]
                start = pos + 12
            elif vr in vrs:
                start = pos + 8
            elif group2 and group != 2:
                return out, pos
            else:
                raise _Unsure
        if group2 and group != 2:
            return out, pos
        tag = group << 16 | elem
        if tag >= _PIXEL_DATA:
            if tag == _PIXEL_DATA and not group2:
                return out, pos
            raise _Unsure
        if length == _UNDEFINED:
            if not _is_sequence(tag, vr):
                raise _Unsure
            end = _skip_sequence(buf, start, implicit, 0)
            value = buf[start:end - 8]
            pos = end
        else:
            pos = start + length
            if pos > size:
                raise _Short
            value = buf[start:pos]
        key = BaseTag(tag)
        out[key] = raw_element(key, vr.decode("ascii") if vr is not None else None, length, value, start,
                               implicit, True, True, False)


def pixel_element(head: bytes, implicit: bool) -> tuple[bytes, str | None, int] | None:
    """The little-endian Pixel Data element header at the start of ``head`` (12 bytes or more):
    its bytes, its VR (None in implicit VR) and its value length; None when ``head`` holds no such
    header with a 4-byte length."""
    if len(head) < 12 or _TAG.unpack_from(head)[0:2] != (0x7FE0, 0x0010):
        return None
    if implicit:
        return head[:8], None, _U32.unpack_from(head, 4)[0]
    vr = head[4:6]
    if vr in _LONG and head[6:8] == b"\0\0":
        return head[:12], vr.decode("ascii"), _U32.unpack_from(head, 8)[0]
    return None


def read_lean(path: str | bytes | os.PathLike[str]) -> tuple[Dataset, str, int, bytes, int, int] | None:
    """The dataset up to Pixel Data, its transfer syntax, the Pixel Data element's offset and its
    first 12 bytes, the file's size and mtime (ns); None when the file is not the plain case (see
    the module docstring) or has no Pixel Data."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        want = _FIRST_READ
        while True:
            buf = os.pread(fh.fileno(), min(want, st.st_size), 0)
            try:
                return _parse(buf, st.st_size, st.st_mtime_ns)
            except _Unsure:
                return None
            except _Short:
                if len(buf) >= st.st_size or want >= _MAX_HEADER:
                    return None
                want *= 4
            except (struct.error, UnicodeDecodeError, ValueError):
                return None


def _parse(buf: bytes, size: int, mtime_ns: int) -> tuple[Dataset, str, int, bytes, int, int]:
    if buf[128:132] != b"DICM":
        raise _Unsure
    meta, pos = _elements(buf, 132, False, True)
    length = meta.get(BaseTag(0x00020000))
    if length is not None and (length.length != 4 or 132 + 12 + _U32.unpack(length.value)[0] != pos):
        raise _Unsure
    syntax = meta.get(BaseTag(0x00020010))
    ts = syntax.value.rstrip(b"\0 ").decode("ascii") if syntax is not None and syntax.value else ""
    if ts not in (_IMPLICIT_LE, _EXPLICIT_LE):
        raise _Unsure
    implicit = ts == _IMPLICIT_LE
    if pos + 6 > len(buf):
        raise _Short
    if implicit == (buf[pos + 4:pos + 6] in _VRS):
        raise _Unsure  # the dataset's encoding does not match its transfer syntax: pydicom decides
    elements, pixel_at = _elements(buf, pos, implicit, False)
    if not elements:
        raise _Unsure
    if pixel_at + 12 > len(buf):
        raise _Short
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    ds.preamble = buf[:128]
    ds.set_original_encoding(implicit, True, ds._character_set)
    return ds, ts, pixel_at, buf[pixel_at:pixel_at + 12], size, mtime_ns
