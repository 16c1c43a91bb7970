"""Burned-in annotation triage: refuse suspicious images, or blank a known mask layout.

Clean images keep Pixel Data byte-identical (never decoded). A suspicious image (rules in
``profiles/burned-in.toml``) is refused with :class:`DicomError` unless the profile has the
Clean Pixel Data option and one of its ``[[mask]]`` layouts matches: then the boxes are
blanked in every frame of native (uncompressed) pixel data, directly in the pixel bytes.
"""

from __future__ import annotations

from typing import Literal

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sfr_gateway.deid.plan import Mask, Plan
from sfr_gateway.errors import DicomError

_BINARY_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT", "SQ", "UV", "SV"})
#: Native (uncompressed) transfer syntaxes: their Pixel Data length can be checked and masked in place.
NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
}


def _text(ds: Dataset, tag: int) -> str | None:
    raw = ds._dict.get(tag)  # type: ignore[call-overload]  # pydicom 3 internal: stored element, unconverted
    if raw is None:
        return None
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes) and raw.value.isascii():
        vr = raw.VR or _dict_vr(tag)
        if vr not in _BINARY_VRS:
            return raw.value.decode("ascii").strip(" \x00")
    value = ds[tag].value
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value)


def _dict_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def read_int(ds: Dataset, tag: int, default: int | None = None) -> int | None:
    """An integer attribute (US/SS/UL/IS) read from raw bytes when possible, else converted."""
    raw = ds._dict.get(tag)  # type: ignore[call-overload]  # pydicom 3 internal: stored element, unconverted
    if raw is None:
        return default
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
        vr = raw.VR or _dict_vr(tag)
        data = raw.value
        order: Literal["little", "big"] = "little" if raw.is_little_endian else "big"
        if vr == "US" and len(data) >= 2:
            return int.from_bytes(data[:2], order)
        if vr == "UL" and len(data) >= 4:
            return int.from_bytes(data[:4], order)
        if vr == "IS":
            text = data.decode("ascii", "replace").strip(" \x00")
            return int(text) if text.lstrip("-").isdigit() else default
        if not data:
            return default
    value = ds[tag].value
    if value in (None, ""):
        return default
    return int(value[0] if isinstance(value, (list, MultiValue)) else value)


def _matches(ds: Dataset, when: tuple) -> bool:
    for tag, regex in when:
        text = _text(ds, tag)
        if text is None or not regex.search(text):
            return False
    return True


def triage(ds: Dataset, plan: Plan) -> tuple[str | None, Mask | None]:
    """Return ``(suspicion reason, mask)`` for ``ds``; ``(None, None)`` when clean."""
    for rule in plan.burned_in:
        if _matches(ds, rule.when):
            if plan.clean_pixel_data:
                for mask in plan.masks:
                    if _matches(ds, mask.when):
                        return rule.reason, mask
            return rule.reason, None
    return None, None


def apply_mask(ds: Dataset, mask: Mask, transfer_syntax: str) -> None:
    """Blank ``mask.regions`` in every frame of native pixel data (in place, bytes only)."""
    import numpy as np

    if transfer_syntax not in NATIVE_SYNTAXES or "PixelData" not in ds:
        raise DicomError("burned-in-mask-unsupported", "mask layouts apply to uncompressed pixel data only")
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits = int(ds.BitsAllocated)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    planar = int(getattr(ds, "PlanarConfiguration", 0) or 0)
    if bits not in (8, 16, 32):
        raise DicomError("burned-in-mask-unsupported", f"BitsAllocated {bits}")
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
    data = bytearray(ds.PixelData)
    need = rows * cols * spp * frames * bits // 8
    if len(data) < need:
        raise DicomError("pixel-data-truncated", "Pixel Data shorter than its geometry")
    arr = np.frombuffer(data, dtype=dtype, count=need // (bits // 8))
    shape = (frames, spp, rows, cols) if planar and spp > 1 else (frames, rows, cols, spp)
    view = arr.reshape(shape)
    for x0, y0, x1, y1 in mask.regions:
        if planar and spp > 1:
            view[:, :, y0:y1, x0:x1] = 0
        else:
            view[:, y0:y1, x0:x1, :] = 0
    ds.PixelData = bytes(data)
    ds.BurnedInAnnotation = "NO"
