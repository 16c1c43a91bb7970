"""Central side of the sites' lossless re-encoding: decode each re-encoded image, compare its pixels.

A site that re-encodes released images (``[batch] image_compression``, ``deid/recode.py``) records
in the manifest, for each such file, the SHA-256 of its pixel values computed from the native
pixels *before* encoding (``pixel_sha256``). The file's own SHA-256 only proves the bytes arrived
as the site wrote them; this proves the code stream decodes to the pixels the site had: a codec
fault, or a code stream damaged before it was hashed, is refused as an integrity error like any
other malformed batch, never unpacked as a silently different image.

Each file is decoded frame by frame (pydicom's decoder plugins: pyjpegls for JPEG-LS), so memory
stays at one frame whatever the size of a multi-frame image.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from ..deid.recode import CODECS, decoded_digest, geometry
from ..errors import IntegrityError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_entry(name: str, entry: dict[str, Any]) -> None:
    """The optional keys of a manifest file entry are well formed (IntegrityError if not)."""
    ts = entry.get("transfer_syntax")
    if ts is not None and (not isinstance(ts, str) or len(ts) > 64 or not _UID.match(ts)):
        raise IntegrityError(f"manifest: bad transfer_syntax for {name!r}")
    digest = entry.get("pixel_sha256")
    if digest is None:
        return
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise IntegrityError(f"manifest: bad pixel_sha256 for {name!r}")
    if ts not in CODECS.values():
        raise IntegrityError(f"manifest: {name!r} has a pixel digest but no re-encoded transfer syntax")


def check_pixels(path: Path, name: str, entry: dict[str, Any]) -> None:
    """For a re-encoded file (its entry has ``pixel_sha256``): its header names the transfer syntax
    the manifest does and its decoded pixels hash to the site's digest; IntegrityError otherwise."""
    expected = entry.get("pixel_sha256")
    if expected is None:
        return
    import pydicom
    from pydicom.pixels import iter_pixels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
            g = geometry(ds)
            if ts != entry.get("transfer_syntax") or g is None:
                raise IntegrityError(f"batch: {name!r}: its header does not describe the re-encoded pixels the manifest "
                                     "declares (transfer syntax or pixel geometry)")
            got = decoded_digest(iter_pixels(path, raw=True), g)
        except IntegrityError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the code stream is not the site's
            raise IntegrityError(f"batch: {name!r}: its pixels do not decode ({type(exc).__name__}): "
                                 "a damaged code stream or a codec fault") from None
    if got != expected:
        raise IntegrityError(f"batch: {name!r}: the decoded pixels differ from the pixel digest the site recorded "
                             "before encoding (a codec fault or a damaged code stream)")
