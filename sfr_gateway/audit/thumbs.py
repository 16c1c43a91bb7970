"""Small PNG thumbnails of DICOM images for the HTML report, with numpy and zlib only.

Pixels are decoded by pydicom (whatever its installed handlers support), the middle frame is
taken, Modality LUT applied, then the image's first VOI window (or its 1st-99th percentile
range) maps it to 8 bits; MONOCHROME1 is inverted. It is shrunk by block averaging to at most
``size`` pixels on its long side and encoded as an 8-bit grey or RGB PNG (RFC 2083: signature,
IHDR, one zlib IDAT, IEND, CRC-32 per chunk). An image that cannot be decoded gets ``None``;
the report shows a placeholder instead.
"""

from __future__ import annotations

import base64
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: Any) -> bytes:
    """PNG bytes of a ``uint8`` array shaped (rows, cols) (grey) or (rows, cols, 3) (RGB)."""
    import numpy as np

    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim == 2:
        color, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] == 3:
        color, channels = 2, 3
    else:
        raise ValueError("PNG thumbnails are grey (H, W) or RGB (H, W, 3)")
    rows, cols = arr.shape[:2]
    raw = np.zeros((rows, 1 + cols * channels), dtype=np.uint8)  # filter byte 0 (None) per scanline
    raw[:, 1:] = arr.reshape(rows, cols * channels)
    header = struct.pack(">IIBBBBB", cols, rows, 8, color, 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + _chunk(b"IEND", b""))


def data_uri(png: bytes) -> str:
    """An inline ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _first(value: Any) -> float | None:
    if value is not None and not isinstance(value, (str, bytes, int, float)):
        value = value[0] if len(value) else None  # multi-valued (MultiValue, list)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def to_8bit(ds: Any, arr: Any) -> Any:
    """Map one decoded frame to ``uint8`` (modality LUT, window, MONOCHROME1 inversion)."""
    import numpy as np

    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    if arr.ndim == 3 and arr.shape[2] == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        arr = arr.astype(np.float64)
        hi = float(arr.max()) or 1.0
        return np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8)
    img = arr.astype(np.float64)
    slope = _first(getattr(ds, "RescaleSlope", None)) or 1.0
    intercept = _first(getattr(ds, "RescaleIntercept", None)) or 0.0
    img = img * slope + intercept
    center = _first(getattr(ds, "WindowCenter", None))
    width = _first(getattr(ds, "WindowWidth", None))
    if center is None or width is None or width <= 1:
        lo, hi = (float(v) for v in np.percentile(img, [1, 99]))
    else:
        lo, hi = center - width / 2, center + width / 2
    if hi <= lo:
        hi = lo + 1
    out = np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out.astype(np.uint8)


def shrink(img: Any, size: int) -> Any:
    """Block-average ``img`` so its long side is at most about ``size`` pixels."""
    import numpy as np

    rows, cols = img.shape[:2]
    step = max(1, -(-max(rows, cols) // size))
    if step == 1:
        return img
    r, c = rows // step * step, cols // step * step
    if r == 0 or c == 0:
        return img[::step, ::step]
    block = img[:r, :c].astype(np.float64)
    shape = (r // step, step, c // step, step) + img.shape[2:]
    return block.reshape(shape).mean(axis=(1, 3)).round().astype(np.uint8)


def thumbnail_of_dataset(ds: Any, size: int = 128) -> bytes | None:
    """PNG thumbnail of a pydicom dataset's image (middle frame), or ``None`` if undecodable."""
    if "PixelData" not in ds:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydicom.pixels import pixel_array

            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            arr = pixel_array(ds, index=frames // 2) if frames > 1 else pixel_array(ds)  # one frame decoded
            if int(getattr(ds, "SamplesPerPixel", 1) or 1) == 1 and arr.ndim != 2:
                return None
            return encode_png(shrink(to_8bit(ds, arr), size))
    except Exception:  # noqa: BLE001 - any decoder failure (missing handler, bad data) means "no thumbnail"
        return None


def thumbnail_of_file(path: Path, size: int = 128) -> bytes | None:
    """PNG thumbnail of the DICOM file at ``path`` (read only), or ``None``."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001 - unreadable file: placeholder
        return None
    return thumbnail_of_dataset(ds, size)
