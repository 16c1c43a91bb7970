"""File level: read a DICOM file once, check it, de-identify it, and serialise the result.

``deidentify_file`` is the single code path used by ``deidentify`` (writes) and ``audit``
(dry run: ``write=False``). Pixel Data is never decoded: clean images keep it byte-identical.
Any file to refuse raises :class:`DicomError` with a reason (never a patient value).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from sfr_gateway import __version__
from sfr_gateway.deid import pixels, tables
from sfr_gateway.deid.engine import Change, Context, Walker, remap_uid
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.pseudonym import PseudonymKeys, Pseudonymizer, patient_key
from sfr_gateway.deid.text import PhiTokens
from sfr_gateway.errors import DicomError

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_TRUNCATION_HINTS = ("end of file", "truncat", "delimiter", "expected", "not enough", "fewer bytes")
IMPLEMENTATION_VERSION = f"SFRGW_{__version__}"[:16]


@dataclass(frozen=True)
class DeidResult:
    """What de-identifying one file produced."""

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

    def relpath(self) -> Path:
        """Output location: ``<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm``."""
        return Path(self.patient_pseudonym, self.study_uid, self.series_uid, f"{self.sop_uid}.dcm")


def read_dataset(src: Path | str | bytes) -> tuple[Dataset, str]:
    """Read a whole file (pixel bytes included, undecoded); return it and its transfer syntax."""
    fp: Any = io.BytesIO(src) if isinstance(src, bytes) else src
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(fp)
            except InvalidDicomError:
                if isinstance(fp, io.BytesIO):
                    fp.seek(0)
                ds = pydicom.dcmread(fp, force=True)
                if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                    raise DicomError("not-dicom", "no DICOM preamble and no parsable dataset") from None
        except DicomError:
            raise
        except (InvalidDicomError, EOFError, struct.error, zlib.error) as exc:
            raise DicomError("unreadable", type(exc).__name__) from None
        except (ValueError, KeyError, TypeError, NotImplementedError, OverflowError, AttributeError, IndexError) as exc:
            raise DicomError("unparsable", type(exc).__name__) from None
        except OSError as exc:
            raise DicomError("unreadable", f"{type(exc).__name__} errno {exc.errno}") from None
    for w in caught:
        message = str(w.message).lower()
        if any(h in message for h in _TRUNCATION_HINTS):
            raise DicomError("truncated", "the file ends before its declared structure")
    if len(ds) == 0:
        raise DicomError("not-dicom", "empty dataset")
    return ds, _transfer_syntax(ds)


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


def _check_pixels(ds: Dataset, ts: str) -> None:
    if "PixelData" not in ds or ts not in pixels._NATIVE:
        return
    try:
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise DicomError("pixel-geometry", "Rows/Columns/BitsAllocated missing or invalid") from None
    need = (rows * cols * spp * frames * bits + 7) // 8
    raw = ds.get_item(0x7FE00010)
    length = len(raw.value) if raw is not None and raw.value is not None else 0
    if length < need:
        raise DicomError("truncated", "Pixel Data shorter than Rows x Columns x frames")


def _tokens(ds: Dataset, plan: Plan) -> PhiTokens:
    tokens = PhiTokens()
    for tags, split in ((plan.phi_words, True), (plan.phi_phrases, False)):
        for tag in tags:
            if tag not in ds:
                continue
            value = ds[tag].value
            values = value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) else [value]
            for v in values:
                if v is not None and not isinstance(v, (bytes, Dataset)):
                    tokens.add_value(str(v).replace("^", " ").replace("=", " "), split_words=split)
    return tokens


def _add_deid_marks(ds: Dataset, plan: Plan, ctx: Context, mask: str | None) -> None:
    opts = tables.options()
    applied = ["basic", *(o for o in plan.options if o != "clean-pixel-data")]
    if mask:
        applied.append("clean-pixel-data")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"SFR gateway {__version__} {plan.name} PS3.15 {tables.PS315_EDITION}"[:64]
    items = []
    for name in applied:
        item = Dataset()
        item.CodeValue = opts[name]["code"]
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = opts[name]["meaning"]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if plan.dates_mode == "full":
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif ctx.dates_moved:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def deidentify_dataset(ds: Dataset, ts: str, plan: Plan, pz: Pseudonymizer, *, record_kept: bool = False) -> DeidResult:
    """De-identify an already read dataset in place (see :func:`deidentify_file`)."""
    sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if not sop_class:
        raise DicomError("missing-sop-class", "no SOP Class UID")
    if sop_class not in plan.sop_allow:
        name = UID_dictionary.get(sop_class, ("unknown",))[0]
        raise DicomError("sop-class-not-allowed", f"{sop_class} ({name}) is not allowed by profile {plan.name}")
    if not str(ds.get("SOPInstanceUID", "") or "").strip():
        raise DicomError("missing-uid", "no SOP Instance UID")
    _check_pixels(ds, ts)
    reason, mask = pixels.triage(ds, plan)
    if reason and mask is None:
        raise DicomError("burned-in-suspected", reason)
    issuer = str(ds.get("IssuerOfPatientID", "") or "")
    pkey = patient_key(str(ds.get("PatientID", "") or ""), issuer, str(ds.get("StudyInstanceUID", "") or ""))
    ctx = Context(
        plan=plan, pz=pz, sop_class=sop_class, patient_key=pkey,
        patient_pseudonym=pz.patient(pkey), date_offset=pz.date_offset(pkey),
        tokens=_tokens(ds, plan) if plan.clean_descriptors else None, record_kept=record_kept,
    )
    if mask is not None:
        pixels.apply_mask(ds, mask, ts)
        ctx.changes.append(Change("PixelData", 0x7FE00010, "PixelData", "OW", None, "cleaned", "C",
                                  f"clean-pixel-data: mask {mask.name} ({reason})"))
    Walker(ctx).walk(ds)
    _add_deid_marks(ds, plan, ctx, mask.name if mask else None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    return DeidResult(
        dataset=ds, data=None, changes=tuple(ctx.changes), patient_pseudonym=ctx.patient_pseudonym,
        study_uid=str(ds.get("StudyInstanceUID", "") or "") or remap_uid(ctx, "no-study:" + pkey),
        series_uid=str(ds.get("SeriesInstanceUID", "") or "") or remap_uid(ctx, "no-series:" + str(ds.SOPInstanceUID)),
        sop_uid=str(ds.SOPInstanceUID), sop_class=sop_class, transfer_syntax=ts,
        mask=mask.name if mask else None, dates_moved=ctx.dates_moved,
    )


def serialise(ds: Dataset) -> bytes:
    """Write ``ds`` (with its file meta and encoding) to bytes."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pydicom.dcmwrite(buf, ds, enforce_file_format=True,
                             implicit_vr=ts == _IMPLICIT_LE, little_endian=ts != _EXPLICIT_BE)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error, OverflowError, NotImplementedError) as exc:
            raise DicomError("unwritable", type(exc).__name__) from None
    return buf.getvalue()


def deidentify_file(src: Path | str, plan: Plan, keys: PseudonymKeys | Pseudonymizer, *,
                    write: bool = True, record_kept: bool = False) -> DeidResult:
    """Read ``src`` once, de-identify it with ``plan`` and ``keys``, and serialise it.

    ``write=False`` is the audit's dry run (no bytes produced). Raises :class:`DicomError`.
    """
    pz = keys if isinstance(keys, Pseudonymizer) else Pseudonymizer(keys, offset_range=plan.offset_range)
    ds, ts = read_dataset(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = deidentify_dataset(ds, ts, plan, pz, record_kept=record_kept)
        except DicomError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, struct.error, OverflowError, NotImplementedError) as exc:
            raise DicomError("unparsable", type(exc).__name__) from None
    if not write:
        return result
    data = serialise(ds)
    return DeidResult(**{**result.__dict__, "data": data})
