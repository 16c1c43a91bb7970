"""File level: read a DICOM file once, check it, de-identify it, and serialise the result.

``deidentify_file`` is the single code path used by ``deidentify`` (writes) and ``audit``
(dry run: ``write=False``). Pixel Data is never decoded: clean images keep it byte-identical.
Any file to refuse raises :class:`DicomError` with a reason (never a patient value).

The batch paths (``deidentify``, ``run``) pass ``pixels_in_place=True``: when Pixel Data is the
last element of a little-endian file, only the header is read and parsed; the result holds the
de-identified header bytes and a :class:`PixelRef` to the source's pixel bytes, which the writer
copies (``copy_file_range``) or streams into the batch without ever holding them in memory. Files
this does not fit (a mask to apply, elements after Pixel Data, encapsulated or big-endian data)
take the whole-file path; both give byte-identical outputs.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import struct
import warnings
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, UID_dictionary

from sfr_gateway import __version__
from sfr_gateway.deid import pixels, tables
from sfr_gateway.deid.engine import Change, Context, Walker, get_text
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys, patient_key
from sfr_gateway.deid.rawread import pixel_element, read_lean
from sfr_gateway.deid.rawwrite import can_write_fast, write_fast
from sfr_gateway.deid.tokens import check_decoded
from sfr_gateway.deid.tokens import collect as collect_tokens
from sfr_gateway.errors import DicomError
from sfr_gateway.home.faults import raise_at

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_TRUNCATION_HINTS = ("end of file", "truncat", "not enough", "fewer bytes")
_DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLEMENTATION_VERSION = f"SFRGW_{__version__}"[:16]


@dataclasses.dataclass(frozen=True)
class PixelRef:
    """A source's Pixel Data value left where it is: ``length`` bytes at ``offset`` of ``path``,
    a file of ``size`` bytes last modified at ``mtime_ns`` when its header was read."""

    path: str
    offset: int
    length: int
    size: int
    mtime_ns: int

    def open_checked(self) -> BinaryIO:
        """Open the source for reading its pixel bytes; DicomError if it changed since its header was read."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except OSError as exc:
            raise DicomError("unreadable", f"{type(exc).__name__} errno {exc.errno}") from None
        st = os.fstat(fh.fileno())
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            fh.close()
            raise DicomError("changed-while-read", "the source changed between its header and its pixel data")
        return fh


def copy_pixels(ref: PixelRef, dst: BinaryIO) -> None:
    """Append the referenced pixel bytes to ``dst`` (a real file), in the kernel when it can."""
    dst.flush()
    out = dst.fileno()
    with ref.open_checked() as src:
        offset, left = ref.offset, ref.length
        fast = hasattr(os, "copy_file_range")
        while left:
            try:
                n = os.copy_file_range(src.fileno(), out, left, offset) if fast else 0
            except OSError as exc:  # another filesystem, an old kernel: plain copy
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                    raise
                fast, n = False, 0
            if not fast:
                block = os.pread(src.fileno(), min(left, 1 << 20), offset)
                n = len(block)
                if n:
                    dst.write(block)
                    dst.flush()
            if n == 0:
                raise DicomError("changed-while-read", "the source became shorter while its pixel data was copied")
            offset += n
            left -= n
    dst.seek(0, os.SEEK_END)


@dataclasses.dataclass(frozen=True)
class DeidResult:
    """What de-identifying one file produced.

    ``data`` is the whole output file (``write=True`` on the whole-file path). With
    ``pixels_in_place``, ``head`` is the output up to the Pixel Data value and ``pixels`` points
    at that value in the source: the output is ``head`` followed by those bytes.
    """

    dataset: Dataset
    data: bytes | None
    changes: tuple[Change, ...]
    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    transfer_syntax: str
    mask: str | None
    dates_moved: bool
    head: bytes | None = None
    pixels: PixelRef | None = None

    @property
    def output_size(self) -> int:
        """Bytes of the output file (when it was serialised)."""
        if self.head is not None:
            return len(self.head) + (self.pixels.length if self.pixels else 0)
        return len(self.data or b"")

    def relpath(self) -> Path:
        """Output location: ``<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm``."""
        return Path(self.patient_pseudonym, self.study_uid, self.series_uid, f"{self.sop_uid}.dcm")


def read_dataset(src: Path | str | bytes) -> tuple[Dataset, str]:
    """Read a whole file (pixel bytes included, undecoded); return it and its transfer syntax."""
    try:
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
    except IsADirectoryError:
        raise DicomError("not-a-file", "a folder") from None
    except OSError as exc:
        raise DicomError("unreadable", f"{type(exc).__name__} errno {exc.errno}") from None
    fp: Any = io.BytesIO(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(fp)
            except InvalidDicomError:
                fp.seek(0)
                ds = pydicom.dcmread(fp, force=True)
                if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                    raise DicomError("not-dicom", "no DICOM preamble and no parsable dataset") from None
        except DicomError:
            raise
        except (InvalidDicomError, EOFError, struct.error, zlib.error) as exc:
            raise DicomError("unreadable", type(exc).__name__) from None
        except (ValueError, KeyError, TypeError, NotImplementedError, OverflowError, AttributeError, IndexError,
                RecursionError) as exc:
            raise DicomError("unparsable", type(exc).__name__) from None
        except OSError as exc:
            raise DicomError("unreadable", f"{type(exc).__name__} errno {exc.errno}") from None
        except pydicom.errors.BytesLengthException:  # e.g. a file meta number of the wrong length
            raise DicomError("unparsable", "BytesLengthException") from None
    for w in caught:
        message = str(w.message).lower()
        if any(h in message for h in _TRUNCATION_HINTS):
            raise DicomError("truncated", "the file ends before its declared structure")
    if len(ds) == 0:
        raise DicomError("not-dicom", "empty dataset")
    ts = _transfer_syntax(ds)
    if ts != _DEFLATED:
        _check_complete(ds, len(data))
    return ds, ts


def read_head(path: Path | str) -> tuple[Dataset, str, PixelRef, bytes] | None:
    """Read a file up to its Pixel Data value: the dataset without Pixel Data, its transfer
    syntax, a reference to the pixel bytes and the Pixel Data element's own header bytes.

    Only when Pixel Data is the file's last element, with a defined length, in a little-endian
    syntax without deflate; None otherwise, and for anything odd (the whole-file read then
    gives the refusal and its reason)."""
    try:
        lean = read_lean(path)
    except OSError:
        return None
    if lean is not None:
        ds, ts, pos, head, size, mtime_ns = lean
    else:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            return None
        with fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                st = os.fstat(fh.fileno())
                size, mtime_ns = st.st_size, st.st_mtime_ns
                ds = pydicom.dcmread(fh, stop_before_pixels=True)
                pos = fh.tell()
                head = fh.read(12)
            except Exception:  # noqa: BLE001 - the whole-file read says what is wrong
                return None
        if caught or len(ds) == 0:
            return None
        try:
            ts = _transfer_syntax(ds)
        except DicomError:
            return None
    implicit = ts == _IMPLICIT_LE
    if ts not in (_IMPLICIT_LE, _EXPLICIT_LE) or ds.original_encoding != (implicit, True):
        return None
    found = pixel_element(head, implicit)
    if found is None or found[1] not in (None, "OB", "OW"):
        return None
    element, _, length = found
    offset = pos + len(element)
    if length == 0xFFFFFFFF or offset + length != size:
        return None
    return ds, ts, PixelRef(os.fsdecode(path), offset, length, size, mtime_ns), element


def attach_pixels(ds: Dataset, ref: PixelRef, element: bytes) -> None:
    """Read the referenced pixel bytes into ``ds``, as a whole-file read would have."""
    with ref.open_checked() as fh:
        value = os.pread(fh.fileno(), ref.length, ref.offset)
    if len(value) != ref.length:
        raise DicomError("changed-while-read", "the source became shorter while its pixel data was read")
    implicit = len(element) == 8
    vr = None if implicit else element[4:6].decode("ascii")
    ds._dict[BaseTag(0x7FE00010)] = RawDataElement(BaseTag(0x7FE00010), vr, ref.length, value, ref.offset,  # type: ignore[index]
                                                   implicit, True, True, False)


def _check_complete(ds: Dataset, size: int) -> None:
    """pydicom stops silently at a cut: the last element must end exactly at the end of file."""
    if not ds._dict:  # pydicom 3 internal: stored elements, unconverted
        return
    last = ds._dict[max(ds._dict)]
    if not isinstance(last, RawDataElement):
        return
    value = last.value if isinstance(last.value, bytes) else b""
    if last.length == 0xFFFFFFFF:
        return  # undefined length: pydicom raises when its delimiter is missing
    if len(value) < last.length:
        raise DicomError("truncated", "the last element is shorter than its declared length")
    if last.value_tell + last.length < size:
        raise DicomError("truncated", "bytes after the last complete element (cut inside an element header)")


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts:
        if ts not in UID_dictionary or UID_dictionary[ts][1] != "Transfer Syntax":
            raise DicomError("unknown-transfer-syntax", ts[:64])
        return ts
    encoding = getattr(ds, "original_encoding", (None, None))
    implicit, little = encoding
    if implicit is None or little is None:
        raise DicomError("unknown-transfer-syntax", "no file meta and no detectable encoding")
    if implicit and little:
        return _IMPLICIT_LE
    if not implicit:
        return _EXPLICIT_LE if little else _EXPLICIT_BE
    raise DicomError("unknown-transfer-syntax", "implicit VR big endian does not exist")


#: Image Pixel module attributes written before Pixel Data (PS3.3 C.7.6.3): Samples per Pixel,
#: Photometric Interpretation, Rows, Columns, Bits Allocated/Stored, High Bit, Pixel Representation.
_IMAGE_PIXEL_MODULE = (0x00280002, 0x00280004, 0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280102,
                       0x00280103)


#: Pixels that are not Pixel Data: Float and Double Float Pixel Data. (A Pixel Data Provider URL, the
#: JPIP reference to a PACS, carries none: such an instance is held too.)
_OTHER_PIXELS = (0x7FE00008, 0x7FE00009)
NO_PIXEL_DATA = "an image SOP class without Pixel Data: possibly truncated at an element boundary; re-export it"


def _check_pixels(ds: Dataset, ts: str, length: int | None = None, sop_class: str = "") -> None:
    """Pixel Data must hold Rows x Columns x samples x frames; ``length`` when it was not read.

    An instance of an image SOP class (its IOD requires Pixel Data: ``tables.pixel_data_iods``)
    without Pixel Data is held: ``truncated`` when its Image Pixel module began (the file ends
    before its pixels), else ``no-pixel-data`` (possibly cut at an element boundary before the
    module, which no length check can see; also the stub files some tools write, such as
    pydicom's TINY_ALPHA CT images). Issue 21: such cuts were released as smaller datasets."""
    if length is None and 0x7FE00010 not in ds:
        if sop_class not in tables.pixel_data_iods() or any(tag in ds for tag in _OTHER_PIXELS):
            return
        if any(tag in ds for tag in _IMAGE_PIXEL_MODULE):
            raise DicomError("truncated", "an Image Pixel module without Pixel Data: the file ends before its pixels")
        raise DicomError("no-pixel-data", NO_PIXEL_DATA)
    if ts not in pixels.NATIVE_SYNTAXES:
        return
    try:
        rows = pixels.read_int(ds, 0x00280010)
        cols = pixels.read_int(ds, 0x00280011)
        bits = pixels.read_int(ds, 0x00280100)
        spp = pixels.read_int(ds, 0x00280002, 1) or 1
        frames = pixels.read_int(ds, 0x00280008, 1) or 1
    except (TypeError, ValueError):
        raise DicomError("pixel-geometry", "Rows/Columns/BitsAllocated invalid") from None
    if rows is None or cols is None or bits is None:
        raise DicomError("pixel-geometry", "Rows/Columns/BitsAllocated missing")
    photometric = get_text(ds, 0x00280004) if 0x00280004 in ds else ""
    if photometric.endswith("_422"):
        spp = 2  # 4:2:2 subsampling: two samples per pixel on average
    need = (rows * cols * spp * frames * bits + 7) // 8
    if length is None:
        raw = ds.get_item(0x7FE00010)
        value = getattr(raw, "value", None)
        length = len(value) if isinstance(value, (bytes, bytearray)) else 0
    if length < need:
        raise DicomError("truncated", "Pixel Data shorter than Rows x Columns x frames")


def _raw(tag: int, vr: str, data: bytes, implicit: bool, little: bool) -> RawDataElement:
    return RawDataElement(BaseTag(tag), vr, len(data), data, 0, implicit, little, True, False)


def _ascii(text: str, pad: bytes = b" ") -> bytes:
    data = text.encode("ascii")
    return data + pad * (len(data) % 2)


@lru_cache(maxsize=64)
def _marks(plan_name: str, applied: tuple[str, ...], temporal: str, implicit: bool, little: bool) -> tuple[RawDataElement, ...]:
    """The de-identification marks, encoded once per plan, outcome and transfer syntax."""
    opts = tables.options()
    items = b""
    for name in applied:
        item = Dataset()
        item.CodeValue = opts[name]["code"]
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = opts[name]["meaning"]
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_dataset(fp, item)
        body = fp.getvalue()
        order: Literal["little", "big"] = "little" if little else "big"
        head = (0xFFFE).to_bytes(2, order) + (0xE000).to_bytes(2, order) + len(body).to_bytes(4, order)
        items += head + body
    method = f"SFR gateway {__version__} {plan_name} PS3.15 {tables.PS315_EDITION}"[:64]
    return (
        _raw(0x00120062, "CS", _ascii("YES"), implicit, little),
        _raw(0x00120063, "LO", _ascii(method), implicit, little),
        _raw(0x00120064, "SQ", items, implicit, little),
        _raw(0x00280303, "CS", _ascii(temporal), implicit, little),
    )


def _add_deid_marks(ds: Dataset, plan: Plan, ctx: Context, mask: str | None, ts: str) -> None:
    """Patient Identity Removed, De-identification Method (+ codes), Longitudinal Temporal Info."""
    applied = ("basic", *(o for o in plan.options if o != "clean-pixel-data"), *(("clean-pixel-data",) if mask else ()))
    if plan.dates_mode == "full":
        temporal = "UNMODIFIED"
    else:
        temporal = "MODIFIED" if ctx.dates_moved else "REMOVED"
    for elem in _marks(plan.name, applied, temporal, ts == _IMPLICIT_LE, ts != _EXPLICIT_BE):
        ds[elem.tag] = elem
        if not ctx.record_changes:
            continue
        value = (len(ds[elem.tag].value) if elem.VR == "SQ" else ds[elem.tag].value) if ctx.keep_values else None
        ctx.changes.append(Change(keyword_for_tag(elem.tag), elem.tag, keyword_for_tag(elem.tag), str(elem.VR), None,
                                  "added", "", "PS3.15 E.1.1 de-identification marks", None, value))


def deidentify_dataset(ds: Dataset, ts: str, plan: Plan, pz: Pseudonymizer, *, record_kept: bool = False,
                       keep_values: bool = False, record: bool = True, pixel_length: int | None = None,
                       triaged: tuple[str | None, Any] | None = None) -> DeidResult:
    """De-identify an already read dataset in place (see :func:`deidentify_file`).

    ``pixel_length``: the length of a Pixel Data value left in the source (not in ``ds``);
    ``triaged``: what ``pixels.triage(ds, plan)`` returned, when the caller already asked.
    """
    sop_class = (get_text(ds, 0x00080016) if 0x00080016 in ds else "") or str(
        getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if not sop_class:
        raise DicomError("missing-sop-class", "no SOP Class UID")
    if sop_class not in plan.sop_allow:
        name = UID_dictionary.get(sop_class, ("unknown",))[0]
        raise DicomError("sop-class-not-allowed", f"{sop_class} ({name}) is not allowed by profile {plan.name}")
    if not (get_text(ds, 0x00080018) if 0x00080018 in ds else "").strip():
        raise DicomError("missing-uid", "no SOP Instance UID")
    _check_pixels(ds, ts, pixel_length, sop_class)
    reason, mask = triaged if triaged is not None else pixels.triage(ds, plan)
    if mask is not None and pixel_length is not None:
        raise RuntimeError("a mask needs the pixel bytes: read the whole file")
    if reason and mask is None:
        raise DicomError("burned-in-suspected", reason)
    def text(tag: int) -> str:
        return get_text(ds, tag) if tag in ds else ""

    pkey = patient_key(text(0x00100020), text(0x00100021), text(0x0020000D))
    ctx = Context(
        plan=plan, pz=pz, sop_class=sop_class, patient_key=pkey,
        patient_pseudonym=pz.patient(pkey), date_offset=pz.date_offset(pkey),
        tokens=collect_tokens(ds, plan), record_kept=record_kept,
        keep_values=keep_values, record_changes=record,
    )
    if mask is not None:
        pixels.apply_mask(ds, mask, ts)
        ctx.changes.append(Change("PixelData", 0x7FE00010, "PixelData", "OW", None, "cleaned", "C",
                                  f"clean-pixel-data: mask {mask.name} ({reason})"))
    Walker(ctx).walk(ds)
    _add_deid_marks(ds, plan, ctx, mask.name if mask else None, ts)
    sop_uid = get_text(ds, 0x00080018)
    study_uid = get_text(ds, 0x0020000D) if 0x0020000D in ds else ""
    series_uid = get_text(ds, 0x0020000E) if 0x0020000E in ds else ""
    ds.file_meta = _file_meta(sop_class, sop_uid, ts)
    return DeidResult(
        dataset=ds, data=None, changes=tuple(ctx.changes), patient_pseudonym=ctx.patient_pseudonym,
        study_uid=study_uid or pz.uid("no-study:" + pkey),
        series_uid=series_uid or pz.uid("no-series:" + sop_uid),
        sop_uid=sop_uid, sop_class=sop_class, transfer_syntax=ts,
        mask=mask.name if mask else None, dates_moved=ctx.dates_moved,
    )


def _file_meta(sop_class: str, sop_uid: str, ts: str) -> FileMetaDataset:
    """The output's file meta (pydicom adds the version and implementation class when writing)."""
    meta = FileMetaDataset()
    values = ((0x00020002, "UI", sop_class), (0x00020003, "UI", sop_uid), (0x00020010, "UI", ts),
              (0x00020013, "SH", IMPLEMENTATION_VERSION))
    if all(text.isascii() for _, _, text in values):  # raw elements: no conversion, no validation pass
        for tag, vr, text in values:
            meta._dict[BaseTag(tag)] = _raw(tag, vr, _ascii(text, b"\0" if vr == "UI" else b" "), False, True)  # type: ignore[index]
        return meta
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


@lru_cache(maxsize=1)
def _valid_vrs() -> frozenset[str]:
    from pydicom.valuerep import VR

    return frozenset(vr.value for vr in VR)


_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8, "UV": 8}


def _check_vrs(ds: Dataset, plan: Plan) -> None:
    """Refuse a dataset still holding, at any depth, an element with an unknown VR (written out
    unchanged, no reader would accept the file) or a public attribute unknown to the data
    dictionary and without a rule in the plan (a damaged tag: it may carry a UID or a name).
    Both were found by the fault campaign."""
    valid, rules = _valid_vrs(), plan.rules
    for key, elem in ds._dict.items():  # pydicom 3 internal: raw (unconverted) and converted elements
        tag = int(key)  # plain ints: BaseTag's == is Python code, called on every dictionary hit
        vr = elem.VR
        if vr is not None and vr not in valid:  # None: implicit VR, not yet converted
            raise DicomError("unparsable", f"unknown VR in {BaseTag(tag)}")
        size = _NUMBER_SIZES.get(vr or "")
        if size and elem.__class__ is RawDataElement and elem.value and len(elem.value) % size:
            raise DicomError("unparsable", f"{vr} value of {BaseTag(tag)} not a whole number of values")
        if not (tag >> 16) % 2 and tag & 0xFFFF and tag not in rules and not _in_dictionary(tag):
            raise DicomError("unknown-attribute", f"public tag {BaseTag(tag)} not in the data dictionary")
        if vr == "SQ" and not isinstance(elem, RawDataElement) and elem.value:
            for item in elem.value:
                _check_vrs(item, plan)


@lru_cache(maxsize=4096)
def _in_dictionary(tag: int) -> bool:
    from pydicom.datadict import get_entry

    try:
        get_entry(tag)
    except KeyError:
        return False
    return True


def serialise(ds: Dataset, fp: BinaryIO | None = None) -> bytes:
    """Write ``ds`` (with its file meta and encoding) to ``fp``, or to bytes when ``fp`` is None.

    Writing straight into the output file saves a copy of the pixel bytes; the returned value
    is then ``b""``. The 128-byte preamble is always written as zeros: a source's preamble can
    carry anything (a TIFF header, a name) and is never copied.
    """
    ds.preamble = b"\x00" * 128
    ts = str(ds.file_meta.TransferSyntaxUID)
    buf = fp if fp is not None else io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if can_write_fast(ds):  # raw elements copied as bytes; identical output, see rawwrite
                write_fast(ds, buf)
            else:
                pydicom.dcmwrite(buf, ds, enforce_file_format=True,
                                 implicit_vr=ts == _IMPLICIT_LE, little_endian=ts != _EXPLICIT_BE)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error, OverflowError, NotImplementedError,
                IndexError, RecursionError) as exc:
            raise DicomError("unwritable", type(exc).__name__) from None
    return buf.getvalue() if isinstance(buf, io.BytesIO) and fp is None else b""


def deidentify_file(src: Path | str | bytes, plan: Plan, keys: PseudonymKeys | Pseudonymizer, *,
                    write: bool = True, record_kept: bool = False, keep_values: bool = False,
                    record: bool = True, pixels_in_place: bool = False) -> DeidResult:
    """Read ``src`` (a path, or the file's bytes) once, de-identify it with ``plan`` and ``keys``, and serialise it.

    ``write=False`` is the audit's dry run (no bytes produced); ``record_kept`` adds records for
    kept attributes and ``keep_values`` keeps before/after values in the records (in memory:
    whoever renders them must mask them); ``record=False`` skips change records altogether
    (the batch runner's fast path). ``pixels_in_place`` (a path only) reads the header alone
    when it can and returns ``head`` and ``pixels`` instead of ``data`` (see the module
    docstring); ``data`` is then set only when that was not possible and ``write`` is true.
    Raises :class:`DicomError`.
    """
    pz = keys if isinstance(keys, Pseudonymizer) else Pseudonymizer.for_plan(keys, plan)
    split = read_head(src) if pixels_in_place and not isinstance(src, bytes) else None
    triaged = pixels.triage(split[0], plan) if split is not None else None
    if triaged is not None and triaged[1] is not None:
        split = triaged = None  # a mask to apply: it needs the pixel bytes
    ref: PixelRef | None = None
    if split is not None:
        ds, ts, ref, element = split
    else:
        ds, ts = read_dataset(src)
    if not isinstance(src, bytes):  # tests: SFR_GATEWAY_RAISE=deidentify:<path part> (an engine bug)
        raise_at("deidentify", os.fsdecode(src))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = deidentify_dataset(ds, ts, plan, pz, record_kept=record_kept, keep_values=keep_values,
                                        record=record, pixel_length=ref.length if ref else None, triaged=triaged)
        except DicomError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, struct.error, OverflowError, NotImplementedError,
                IndexError, RecursionError) as exc:
            raise DicomError("unparsable", type(exc).__name__) from None
        except pydicom.errors.BytesLengthException:  # a numeric value whose length does not fit its VR
            raise DicomError("unparsable", "BytesLengthException") from None
    _check_vrs(ds, plan)
    check_decoded(caught)
    if ref is not None:
        if can_write_fast(ds):
            return dataclasses.replace(result, head=serialise(ds) + element, pixels=ref)
        attach_pixels(ds, ref, element)  # a charset or syntax change: pydicom writes it all
    if not write:
        return result
    return dataclasses.replace(result, data=serialise(ds))
