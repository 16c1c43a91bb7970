"""Header-only reading of one source file into the facts the ledger indexes (``HeaderFacts``).

Never reads pixel data: it parses up to (7FE0,0010), then checks from the element's own
header that the declared length fits in the file (a truncated export is caught here).
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
from typing import Any, BinaryIO

from ..errors import DicomError
from ..ledger.instances import HeaderFacts

# pydicom is imported on first use: an unchanged rescan never opens a file and never needs it.
_DEFLATED = "1.2.840.10008.1.2.1.99"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_IMPLICIT = "1.2.840.10008.1.2"

UNREADABLE_REASONS = {
    "empty-file": "the file is empty",
    "not-dicom": "not a DICOM file (no DICM prefix and no parseable dataset)",
    "no-file-meta-unparseable": "no file meta and the dataset does not parse unambiguously",
    "truncated": "the file ends before a declared element does",
    "unparseable": "the header cannot be parsed",
    "missing-uid": "no SOP Instance UID",
    "no-pixel-data": "an image SOP class without Pixel Data: possibly truncated at an element boundary; re-export it",
    "permission-denied": "no read permission",
    "symlink-loop": "symbolic link loop",
    "io-error": "the file system returned an error",
    "vanished": "the file disappeared during the scan",
}

_UNDEFINED = 0xFFFFFFFF
_BLANK = " \t\n\r\x0b\x0c\x00"  # str.strip()'s ASCII whitespace, and the NUL that pads UIDs


_TAGS = {
    "SOPClassUID": 0x00080016, "SOPInstanceUID": 0x00080018, "PatientID": 0x00100020, "IssuerOfPatientID": 0x00100021,
    "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E, "Modality": 0x00080060,
    "BodyPartExamined": 0x00180015, "StudyDate": 0x00080020, "StudyDescription": 0x00081030,
    "SeriesDescription": 0x0008103E, "ProtocolName": 0x00181030, "ImageType": 0x00080008, "SeriesNumber": 0x00200011,
    "NumberOfFrames": 0x00280008,
}


def _raw_ascii(ds: Any, keyword: str) -> str | None:
    """The value's text straight from its raw bytes when they are plain ASCII (what pydicom's
    conversion gives for these VRs, multi-values joined by ``\\``); None when pydicom must decode."""
    elem = ds._dict.get(_TAGS[keyword])  # pydicom 3 internal: stored elements, unconverted
    if elem is None:
        return ""
    value = getattr(elem, "value", None) if type(elem).__name__ == "RawDataElement" else None
    if not isinstance(value, bytes) or not value.isascii() or b"\x1b" in value:
        return None
    return value.decode("ascii").strip(_BLANK)


def _text(ds: Any, keyword: str) -> str:
    raw = _raw_ascii(ds, keyword)
    return raw if raw is not None else value_text(ds, keyword)


def value_text(ds: Any, keyword: str) -> str:
    """An element's value as text through pydicom (multi-values joined by ``\\``); "" when absent
    or malformed. Also reads ``pull``'s C-FIND answers."""
    try:
        value = ds.get(keyword, "")
    except Exception:  # noqa: BLE001 - a malformed value is treated as absent here
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Any, keyword: str) -> int | None:
    try:
        raw = _raw_ascii(ds, keyword)
        if raw is not None and raw.lstrip("+-").isdigit():
            return int(raw)
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


def _check_lengths(ds: Any, fh: BinaryIO, size: int, syntax: str) -> None:
    """Raise ``truncated`` when an element or the pixel data claims bytes beyond the file's end."""
    last_end: int | None = None
    for elem in ds._dict.values():
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if tell is None or length in (None, _UNDEFINED):
            last_end = None
            continue
        last_end = tell + length
        if last_end > size:
            raise DicomError("truncated", f"element {elem.tag} ends past the end of the file")
    if syntax == _DEFLATED:
        return
    head = fh.read(12)
    if len(head) < 8:
        if "Rows" in ds and "BitsAllocated" in ds:
            raise DicomError("truncated", "image attributes but the file ends before pixel data")
        if last_end is not None and last_end < size:
            raise DicomError("truncated", "the file ends inside an element header")
        _check_image_has_pixels(ds)
        return  # no pixel data element: a header-only object
    endian = ">" if syntax == _BIG_ENDIAN else "<"
    group, element = struct.unpack(endian + "HH", head[:4])
    if group != 0x7FE0 or element not in (0x0008, 0x0009, 0x0010):
        return
    if syntax in (_IMPLICIT, ""):
        (length,), header = struct.unpack(endian + "L", head[4:8]), 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        if len(head) < 12:
            raise DicomError("truncated", "pixel data header cut")
        (length,), header = struct.unpack(endian + "L", head[8:12]), 12
    else:
        (length,), header = struct.unpack(endian + "H", head[6:8]), 8
    if length != _UNDEFINED and fh.tell() - len(head) + header + length > size:
        raise DicomError("truncated", "pixel data ends past the end of the file")


def _check_image_has_pixels(ds: Any) -> None:
    """An instance of an image SOP class (its IOD requires Pixel Data) that ends without pixels is
    held (``no-pixel-data``): possibly cut at an element boundary, which no length can show."""
    from ..deid.tables import pixel_data_iods

    if _text(ds, "SOPClassUID") in pixel_data_iods() and not any(
            tag in ds._dict for tag in (0x7FE00008, 0x7FE00009)):  # Float, Double Float Pixel Data
        raise DicomError("no-pixel-data")


def read_header(path: bytes | str) -> tuple[HeaderFacts, int, int]:
    """Read one file's header facts. Returns (facts, size, mtime_ns); raises DicomError."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    lean = _read_lean(path)
    if lean is not None:
        return lean
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            if st.st_size == 0:
                raise DicomError("empty-file")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ds = pydicom.dcmread(fh, stop_before_pixels=True)
                except InvalidDicomError:
                    fh.seek(0)
                    ds = _read_raw(fh)
                syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
                _check_lengths(ds, fh, st.st_size, syntax)
                facts = _facts(ds, syntax)
    except DicomError:
        raise
    except PermissionError:
        raise DicomError("permission-denied") from None
    except FileNotFoundError:
        raise DicomError("vanished") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DicomError("symlink-loop") from None
        raise DicomError("io-error", errno.errorcode.get(exc.errno or 0, "")) from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means this file is unreadable
        raise DicomError("unparseable", exc.__class__.__name__) from None
    if not facts.sop_instance_uid:
        raise DicomError("missing-uid")
    return facts, st.st_size, st.st_mtime_ns


def _read_lean(path: bytes | str) -> tuple[HeaderFacts, int, int] | None:
    """The common file (see ``deid.rawread``): facts without pydicom's reader; None otherwise
    (or on any error: the pydicom path then gives the reason)."""
    from ..deid.rawread import pixel_element, read_lean

    try:
        lean = read_lean(path)
    except OSError:
        return None
    if lean is None:
        return None
    ds, syntax, pixel_at, head, size, mtime_ns = lean
    found = pixel_element(head, syntax == _IMPLICIT)
    if found is None:
        return None
    element, _, length = found
    if length != _UNDEFINED and pixel_at + len(element) + length > size:
        raise DicomError("truncated", "pixel data ends past the end of the file")
    facts = _facts(ds, syntax)
    if not facts.sop_instance_uid:
        raise DicomError("missing-uid")
    return facts, size, mtime_ns


def _read_raw(fh: BinaryIO) -> Any:
    """A dataset written without preamble and file meta: accept it only if it parses plainly."""
    start = fh.read(8)
    fh.seek(0)
    import pydicom

    if len(start) < 8 or struct.unpack("<H", start[:2])[0] not in (0x0008, 0x0002):
        raise DicomError("not-dicom")
    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001
        raise DicomError("no-file-meta-unparseable") from None
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise DicomError("no-file-meta-unparseable", "no SOP Class or SOP Instance UID")
    return ds


def _facts(ds: Any, syntax: str) -> HeaderFacts:
    return HeaderFacts(
        sop_class_uid=_text(ds, "SOPClassUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        issuer=_text(ds, "IssuerOfPatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality").upper(),
        body_part=_text(ds, "BodyPartExamined").upper(),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        image_type=_text(ds, "ImageType").upper(),
        series_number=_int(ds, "SeriesNumber"),
        frames=_int(ds, "NumberOfFrames") or 1,
        transfer_syntax=syntax or "none (raw dataset without file meta)",
    )
