"""Lossless re-encoding of released images before they enter a batch (``[batch] image_compression``).

Why: at a site the uplink, not the CPU, bounds how fast a week of chest CT reaches the centre.
On real CT, JPEG-LS Lossless carries the pixels in about half the bytes zstd leaves (pydicom-data's
``693_UNCR.dcm``: 0.19 of the pixel bytes against 0.39), and every decoder gives back every pixel
value bit for bit. The codec is CharLS through ``pyjpegls``, the plugin pydicom 3 itself encodes
JPEG-LS with; dcmtk (``dcmdjpls``), pydicom and every PACS read the result.

What is re-encoded: native little-endian Pixel Data (Implicit or Explicit VR Little Endian) of 8
bits stored in 8, or 9 to 16 stored in 16 (the depths dcmtk's JPEG-LS decoder accepts: it refuses
a code stream of fewer bits than its samples' bytes hold), one sample (MONOCHROME1/2, PALETTE COLOR)
or three (RGB, YBR_FULL), whose bits above Bits Stored are clean (zero, or the sign extension of
signed pixels), so that decoding restores every value exactly. Everything else goes as it came:
files already compressed (losslessly: nothing to gain; lossily: re-encoding would only keep the
loss), big-endian or deflated files, 1- and 32-bit pixels, subsampled colour, a pixel stream
carrying other bits above Bits Stored (old overlays), and any image whose code stream would not
be smaller than its pixel bytes.

The pixel digest (``pixel_sha256`` in the manifest) is the SHA-256 of the pixel values as a
decoder returns them, computed here from the native pixels before encoding: frame after frame,
row after row, the samples of a pixel together, each value a little-endian integer of Bits
Allocated bits (two's complement when signed). ``central open`` decodes every re-encoded file and
compares (``central/pixelcheck.py``): a codec fault or a damaged code stream cannot pass silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import BaseTag
from pydicom.uid import UID

from sfr_gateway.deid import pixels
from sfr_gateway.deid.engine import get_text
from sfr_gateway.deid.files import DeidResult, serialise
from sfr_gateway.errors import DicomError

JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
CODECS: dict[str, str] = {"jpeg-ls": JPEG_LS_LOSSLESS}  # [batch] image_compression value -> transfer syntax
NONE = "none"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_PHOTOMETRIC = {1: frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}), 3: frozenset({"RGB", "YBR_FULL"})}
_PIXEL_DATA = 0x7FE00010


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What the pixel values are: their layout and integer type (from the header)."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    planar: int

    @property
    def count(self) -> int:
        """Pixel values (samples) in all frames."""
        return self.rows * self.columns * self.samples * self.frames

    @property
    def nbytes(self) -> int:
        return self.count * self.bits_allocated // 8

    @property
    def dtype(self) -> str:
        """numpy dtype of one value as the digest counts it (little endian)."""
        return ("<i" if self.signed else "<u") + str(self.bits_allocated // 8)


@dataclasses.dataclass(frozen=True)
class Recoded:
    """A released file with its pixels re-encoded: the whole output file and what the manifest records."""

    data: bytes
    transfer_syntax: str
    pixel_sha256: str
    source_transfer_syntax: str

    def manifest_entry(self) -> dict[str, str]:
        """What the batch manifest records of this file beside its name, size and SHA-256."""
        return {"transfer_syntax": self.transfer_syntax, "pixel_sha256": self.pixel_sha256,
                "reencoded_from": self.source_transfer_syntax}


def geometry(ds: Dataset) -> Geometry | None:
    """The pixel geometry of ``ds`` when the codec can carry it bit for bit, else None."""
    try:
        rows = pixels.read_int(ds, 0x00280010)
        cols = pixels.read_int(ds, 0x00280011)
        allocated = pixels.read_int(ds, 0x00280100)
        stored = pixels.read_int(ds, 0x00280101)
        high = pixels.read_int(ds, 0x00280102)
        signed = pixels.read_int(ds, 0x00280103, 0)
        samples = pixels.read_int(ds, 0x00280002, 1) or 1
        frames = pixels.read_int(ds, 0x00280008, 1) or 1
        planar = pixels.read_int(ds, 0x00280006, 0) or 0
    except (TypeError, ValueError, IndexError):
        return None
    if not rows or not cols or allocated is None or stored is None or stored > allocated:
        return None
    if (allocated, min(stored, 9)) not in ((8, 8), (16, 9)):
        return None  # 8 of 8 bits, or 9 to 16 of 16: dcmtk's decoder (CharLS 1) refuses other JPEG-LS depths
    if high not in (None, stored - 1) or signed not in (0, 1) or frames < 1 or planar not in (0, 1):
        return None
    photometric = get_text(ds, 0x00280004).strip().upper() if 0x00280004 in ds else ""
    if photometric not in _PHOTOMETRIC.get(samples, ()):
        return None
    return Geometry(rows, cols, frames, samples, allocated, stored, bool(signed), planar)


def _clean(values: Any, g: Geometry) -> bool:
    """The bits above Bits Stored hold nothing but zeros or the sign: decoding restores them."""
    if g.bits_stored == g.bits_allocated:
        return True
    if g.signed:
        signed = values.view(g.dtype)
        half = 1 << (g.bits_stored - 1)
        return bool(signed.min() >= -half and signed.max() < half)
    return bool(values.max() < (1 << g.bits_stored))


def _frames(values: Any, g: Geometry) -> Iterable[Any]:
    """Each frame's values as the codec takes them (unsigned, cut to Bits Stored)."""
    per_frame = g.count // g.frames
    if g.signed and g.bits_stored < g.bits_allocated:
        values = values & ((1 << g.bits_stored) - 1)
    for i in range(g.frames):
        yield values[i * per_frame : (i + 1) * per_frame]


def _digest(view: memoryview, values: Any, g: Geometry) -> str:
    """SHA-256 of the pixel values in decoder order (see the module docstring)."""
    if g.samples == 1 or g.planar == 0:
        return hashlib.sha256(view).hexdigest()  # native order is decoder order: no copy
    planes = values.reshape(g.frames, g.samples, g.rows, g.columns).transpose(0, 2, 3, 1)
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(planes).tobytes()).hexdigest()


def encode_frames(values: Any, g: Geometry) -> list[bytes] | None:
    """JPEG-LS Lossless code streams of every frame, or None when CharLS refuses the image."""
    import jpeg_ls

    out: list[bytes] = []
    for frame in _frames(values, g):
        try:
            code = jpeg_ls.encode_buffer(frame.tobytes(), g.rows, g.columns,
                                         g.samples, g.bits_stored, lossy_error=0,
                                         interleave_mode=(0 if g.planar else 2) if g.samples > 1 else None)
        except (RuntimeError, ValueError):  # e.g. an image too small for CharLS's output buffer
            return None
        out.append(bytes(code))
    return out


def native_pixels(result: DeidResult) -> bytes | None:
    """The released file's native Pixel Data value (from the source when it was left there)."""
    ref = result.pixels
    if ref is not None:
        with ref.open_checked() as fh:
            value = os.pread(fh.fileno(), ref.length, ref.offset)
        if len(value) != ref.length:
            raise DicomError("changed-while-read", "the source became shorter while its pixel data was read")
        return value
    if _PIXEL_DATA not in result.dataset:
        return None
    value = result.dataset[_PIXEL_DATA].value
    return value if isinstance(value, bytes) else None


def reencode(result: DeidResult, codec: str) -> Recoded | None:
    """``result`` (a de-identified file) with its pixels re-encoded by ``codec`` (a key of
    :data:`CODECS`), or None when the file goes as it is (see the module docstring).

    The output's header is the de-identified header with the new transfer syntax (Planar
    Configuration 0, as PS3.5 8.2.3 asks of JPEG-LS); DicomError if the source changed since it was read.
    """
    import numpy as np

    ts = result.transfer_syntax
    if codec not in CODECS or ts not in (_IMPLICIT_LE, _EXPLICIT_LE):
        return None
    ds = result.dataset
    g = geometry(ds)
    if g is None:
        return None
    value = native_pixels(result)
    if value is None or len(value) not in (g.nbytes, g.nbytes + 1):  # + 1: the pad of an odd length
        return None
    view = memoryview(value)[: g.nbytes]
    values = np.frombuffer(view, dtype="<u" + str(g.bits_allocated // 8))
    if not _clean(values, g):
        return None
    frames = encode_frames(values, g)
    if frames is None or sum(len(f) for f in frames) >= g.nbytes:
        return None
    digest = _digest(view, values, g)
    target = CODECS[codec]
    if g.samples > 1 and g.planar:
        ds.PlanarConfiguration = 0
    ds._dict[BaseTag(_PIXEL_DATA)] = RawDataElement(  # type: ignore[index]  # pydicom 3 internal
        BaseTag(_PIXEL_DATA), "OB", 0xFFFFFFFF, encapsulate(frames, has_bot=True), 0, False, True, True, False)
    ds.file_meta.TransferSyntaxUID = UID(target)  # the meta the engine wrote, its syntax changed
    return Recoded(serialise(ds), target, digest, ts)


def decoded_digest(frames: Iterable[Any], g: Geometry) -> str:
    """The pixel digest of decoded frames (numpy arrays in decoder order): central's side of the check."""
    import numpy as np

    sha = hashlib.sha256()
    for frame in frames:
        sha.update(np.ascontiguousarray(frame, dtype=g.dtype).tobytes())
    return sha.hexdigest()
