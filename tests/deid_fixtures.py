"""Helpers shared by the engine's tests (``tests/test_deid_*.py``): keys, plans, datasets."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from sfr_gateway.deid import Pseudonymizer, PseudonymKeys, compile_plan, load_profile
from sfr_gateway.deid.plan import Plan

SECRET_A = bytes(range(32))
SECRET_B = bytes(range(1, 33))
KEYS_A = PseudonymKeys(SECRET_A, "TEST01")
KEYS_B = PseudonymKeys(SECRET_B, "TEST01")


def plan_for(name: str = "basic", *options: str, **kwargs: object) -> Plan:
    """Compile a packaged profile (or .toml path) with extra options."""
    return compile_plan(load_profile(name, options=options, **kwargs))  # type: ignore[arg-type]


def pz_for(plan: Plan, keys: PseudonymKeys = KEYS_A) -> Pseudonymizer:
    """The keyed derivations the engine uses with ``plan``."""
    return Pseudonymizer(keys, offset_range=plan.offset_range)


def minimal_ct(
    *,
    sop_uid: str = "1.2.826.0.1.3680043.10.1374.7.1",
    study_uid: str = "1.2.826.0.1.3680043.10.1374.7.2",
    series_uid: str = "1.2.826.0.1.3680043.10.1374.7.3",
    patient_id: str = "12345678",
    name: str = "DUPONT^JEAN",
    charset: str = "ISO_IR 192",
    rows: int = 4,
    cols: int = 4,
) -> Dataset:
    """A tiny but complete CT image dataset with a few planted identifiers."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.Modality = "CT"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600102"
    ds.PatientSex = "F"
    ds.StudyDate = "20200315"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC778899"
    ds.StudyID = "S4455"
    ds.ReferringPhysicianName = "MARTIN^SOPHIE"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * (rows * cols * 2 // 256) + bytes(rows * cols * 2 % 256)
    return ds


def to_bytes(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    """Encode ``ds`` as a DICOM file (preamble + meta) in memory."""
    if hasattr(ds, "file_meta"):
        ds.file_meta.TransferSyntaxUID = (
            "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"
        )
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True, implicit_vr=implicit, little_endian=little)
    return buf.getvalue()


def reread(data: bytes) -> Dataset:
    """Parse output bytes and convert every element (so bad values fail the test)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for elem in ds.iterall():
        _ = elem.value
    return ds


def norm(text: str) -> str:
    """Accent- and case-insensitive form, as an independent oracle for token hunting."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def all_text(ds: Dataset) -> str:
    """Every textual value of ``ds`` at every depth (private and file meta included), joined."""
    parts: list[str] = []
    if hasattr(ds, "file_meta"):
        parts.extend(str(e.value) for e in ds.file_meta)
    for elem in ds.iterall():
        value = elem.value
        if elem.VR == "SQ":
            continue
        if isinstance(value, bytes):
            parts.append(value.decode("latin-1"))
            parts.append(value.decode("utf-8", "replace"))
        else:
            parts.append(str(value))
    return "\n".join(parts)


def sequence_of(*items: Dataset) -> Sequence:
    """A pydicom Sequence of ``items``."""
    return Sequence(list(items))


def write_file(path: Path, ds: Dataset, **kwargs: bool) -> Path:
    """Write ``ds`` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(ds, **kwargs))
    return path
