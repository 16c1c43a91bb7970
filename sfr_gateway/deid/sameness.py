"""Are two DICOM files the same instance? For inputs that share a SOP Instance UID.

Two files with one SOP Instance UID are either copies of one instance (byte-identical, or the
same dataset in another transfer syntax: implicit/explicit VR, byte order, a lossless or an
encapsulated encoding of the same pixels) or a conflict (two different objects under one UID,
which no receiver can tell apart). :func:`compare_files` says which, naming the first attribute
that differs by keyword (never a value). ``deidentify`` releases a copy once and counts it as a
duplicate, and quarantines a conflict; ``scan``/``run`` can call the same function.

Pixel Data in two different encodings is compared decoded, with whatever pixel decoders pydicom
has here (native and RLE always; JPEG, JPEG-LS and JPEG 2000 with pylibjpeg's plugins): when
one cannot be decoded the verdict is ``undecided``, which a caller treats as a conflict.
"""

from __future__ import annotations

import filecmp
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary

from sfr_gateway.deid.values import keyword_of

_PIXEL_DATA = 0x7FE00010
_IGNORED = frozenset({0xFFFCFFFC})  # Data Set Trailing Padding: not part of the instance
_SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


@dataclass(frozen=True)
class Sameness:
    """``verdict``: ``identical`` (same bytes), ``same-instance`` (same dataset apart from the
    transfer syntax), ``different`` or ``undecided``; ``detail`` names the first difference or
    why no verdict was possible (keywords and transfer syntax names only)."""

    verdict: str
    detail: str = ""

    @property
    def words(self) -> str:
        """The verdict for a reader: "the same instance", "not the same instance", "not shown to be"."""
        return {"identical": "the same instance", "same-instance": "the same instance",
                "different": "not the same instance"}.get(self.verdict, "not shown to be the same instance")

    @property
    def same(self) -> bool:
        """True when the two files hold one instance."""
        return self.verdict in ("identical", "same-instance")


def _read(path: str | os.PathLike[str]) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _little(value: bytes, vr: str, little: bool) -> bytes:
    size = _SWAP.get(vr)
    if little or not size or len(value) % size:
        return value
    return b"".join(value[i:i + size][::-1] for i in range(0, len(value), size))


def _plain(value: Any) -> Any:
    if isinstance(value, (list, MultiValue)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return value.rstrip(" \x00")
    return value


def _syntax(ds: Dataset) -> str:
    return str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")


def _datasets(a: Dataset, b: Dataset, little_a: bool, little_b: bool, prefix: str = "") -> str:
    """The path of the first attribute that differs ("" when none), pixel data aside."""
    tags = sorted({int(t) for t in a.keys()} | {int(t) for t in b.keys()})
    for tag in tags:
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0 or tag in _IGNORED or (tag == _PIXEL_DATA and not prefix):
            continue
        where = prefix + keyword_of(tag)
        if tag not in a or tag not in b:
            return where
        ea, eb = a[tag], b[tag]
        if ea.VR == "SQ" or eb.VR == "SQ":
            items_a, items_b = list(ea.value or []), list(eb.value or [])
            if ea.VR != eb.VR or len(items_a) != len(items_b):
                return where
            for i, (ia, ib) in enumerate(zip(items_a, items_b, strict=True)):
                found = _datasets(ia, ib, little_a, little_b, f"{where}[{i}].")
                if found:
                    return found
            continue
        va, vb = ea.value, eb.value
        if isinstance(va, bytes) and isinstance(vb, bytes):
            if _little(va, ea.VR, little_a) != _little(vb, eb.VR, little_b):
                return where
        elif _plain(va) != _plain(vb):
            return where
    return ""


def _pixels(a: Dataset, b: Dataset) -> Sameness | None:
    """None when the pixel data agree; else the verdict."""
    if (_PIXEL_DATA in a) != (_PIXEL_DATA in b):
        return Sameness("different", "PixelData")
    if _PIXEL_DATA not in a:
        return None
    ts_a, ts_b = _syntax(a), _syntax(b)
    if ts_a == ts_b and a.PixelData == b.PixelData:
        return None
    try:
        import numpy as np

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = bool(np.array_equal(a.pixel_array, b.pixel_array))
    except Exception as exc:  # noqa: BLE001 - any decoder failure leaves the question open
        names = " / ".join(sorted({UID_dictionary.get(t, (t,))[0] for t in (ts_a, ts_b)}))
        return Sameness("undecided", f"pixel data not comparable here ({names}: {type(exc).__name__})")
    return None if same else Sameness("different", "PixelData (decoded pixels differ)")


def compare_datasets(a: Dataset, b: Dataset) -> Sameness:
    """Whether two read datasets hold one instance (file meta and encoding aside)."""
    little_a = getattr(a, "original_encoding", (None, True))[1] is not False
    little_b = getattr(b, "original_encoding", (None, True))[1] is not False
    try:
        found = _datasets(a, b, little_a, little_b)
    except Exception as exc:  # noqa: BLE001 - a value pydicom cannot convert: no verdict
        return Sameness("undecided", f"unreadable value ({type(exc).__name__})")
    if found:
        return Sameness("different", found)
    pixels = _pixels(a, b)
    return pixels if pixels is not None else Sameness("same-instance", "same dataset apart from the transfer syntax")


def compare_files(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Sameness:
    """Whether files ``a`` and ``b`` hold one instance (see the module docstring)."""
    if filecmp.cmp(a, b, shallow=False):
        return Sameness("identical", "byte-identical files")
    try:
        da, db = _read(a), _read(b)
    except Exception as exc:  # noqa: BLE001 - either file unreadable: no verdict
        return Sameness("undecided", f"unreadable ({type(exc).__name__})")
    return compare_datasets(da, db)


def sop_instance_uid(path: str | Path) -> str:
    """The SOP Instance UID of a file ("" when it has none)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPInstanceUID"])
    return str(ds.get("SOPInstanceUID", "") or "").strip()
