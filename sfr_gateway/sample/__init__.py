"""Synthetic PACS exports: chest-CT studies carrying fake PHI, for the demo, tests and benchmarks.

Everything here is invented. From the command line: ``sfr-gateway sample OUTDIR`` (or
``python -m sfr_gateway.sample OUTDIR``). Names, IDs and dates come from a seeded generator; nothing is real.
The planted PHI is deliberately nasty: accented French names, the name inside free text and a
private element, IDs inside nested sequences, two character sets.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

SAMPLE_UID_ROOT = "1.2.826.0.1.3680043.10.1374."  # a demo root; nothing real lives under it

_LAST = ["LEFÈVRE", "MÜLLER", "NGUYEN", "BENOÎT", "GARÇON", "DUBOIS", "HADDAD", "ZOUARI", "MOREAU", "CÔTÉ"]
_FIRST = ["Hélène", "François", "Zoé", "Jérôme", "Anaïs", "Noël", "Inès", "Amélie", "Loïc", "Maëlle"]
_MIDDLE = ["Marie", "Joseph", "Claire", "Rémi", "Aïcha", "Élodie"]
_PHYS = ["DURAND^Pierre", "MARTIN^Sophie", "ROUSSEAU^Émile", "BERNARD^Cécile", "PETIT^Gaëtan"]
_STREETS = ["12 rue de la Paix", "4 avenue Jean Jaurès", "27 boulevard Gambetta", "8 place Bellecour"]
_CITIES = ["Saint-Étienne", "Besançon", "Orléans", "Créteil", "Nîmes"]
_INSTITUTIONS = ["CHU de Saint-Étienne", "Hôpital Européen Georges-Pompidou", "CHU Grenoble Alpes"]


@dataclass
class FakePatient:
    """One invented patient and every PHI token planted in their files."""

    patient_id: str
    issuer: str
    family: str
    given: str
    middle: str
    birth_date: str
    sex: str
    address: str
    phone: str
    institution: str
    physicians: list[str]
    operator: str
    charset: str
    accession_numbers: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)
    study_dates: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}"

    @property
    def tokens(self) -> dict[str, list[str]]:
        """The planted PHI by kind, for tests that hunt for leaks."""
        return {
            "name": [self.family, self.given, self.middle],
            "id": [self.patient_id, self.patient_id + "-OLD"],
            "birth_date": [self.birth_date],
            "address": [self.address],
            "phone": [self.phone],
            "institution": [self.institution],
            "physician": [p.split("^")[0] for p in self.physicians] + [self.operator.split("^")[0]],
            "accession": list(self.accession_numbers),
            "study_uid": list(self.study_uids),
            "date": list(self.study_dates),
        }


@dataclass
class StudySpec:
    kind: str  # chest | chest-old | head | mr
    date: dt.date
    uid: str
    accession: str
    study_id: str


@dataclass
class SampleExport:
    """What ``generate_export`` wrote."""

    root: Path
    files: list[Path]
    patients: list[FakePatient]


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def make_patients(count: int, seed: int = 0) -> list[FakePatient]:
    """``count`` invented patients, deterministic for a seed."""
    rng = random.Random(seed)
    patients = []
    for i in range(count):
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 70))
        patients.append(
            FakePatient(
                patient_id=f"{rng.randrange(10**7, 10**8)}",
                issuer="IPP-CHU-TEST",
                family=_LAST[(i + seed) % len(_LAST)],
                given=_FIRST[(i * 3 + seed) % len(_FIRST)],
                middle=_MIDDLE[(i + 2 * seed) % len(_MIDDLE)],
                birth_date=birth.strftime("%Y%m%d"),
                sex=rng.choice("MF"),
                address=f"{rng.choice(_STREETS)}^^{rng.choice(_CITIES)}^^{rng.randrange(10000, 99999)}^FR",
                phone=f"+334{rng.randrange(10**7, 10**8)}",
                institution=rng.choice(_INSTITUTIONS),
                physicians=rng.sample(_PHYS, 2),
                operator=rng.choice(["TECH^Julien", "MANIP^Océane", "RADIO^Théo"]),
                charset="ISO_IR 192" if i % 2 == 0 else "ISO_IR 100",
            )
        )
    return patients


def _studies_for(index: int, patient: FakePatient, rng: random.Random, extras: bool) -> list[StudySpec]:
    base = dt.date(2020, 3, 10) + dt.timedelta(days=rng.randrange(0, 120))
    kinds = [("chest", base)]
    if extras:
        if index % 2 == 1:
            kinds.append(("chest", base + dt.timedelta(days=rng.randrange(7, 40))))
        if index % 3 == 2:
            kinds.append(("head", base + dt.timedelta(days=2)))
        if index % 4 == 3:
            kinds.append(("chest-old", dt.date(2019, 6, 1) + dt.timedelta(days=rng.randrange(0, 90))))
        if index % 5 == 4:
            kinds.append(("mr", base + dt.timedelta(days=1)))
    specs = []
    for kind, date in kinds:
        spec = StudySpec(
            kind=kind,
            date=date,
            uid=SAMPLE_UID_ROOT + f"{rng.randrange(10**20, 10**21)}",
            accession=f"A{rng.randrange(10**8, 10**9)}",
            study_id=f"{rng.randrange(1000, 99999)}",
        )
        patient.accession_numbers.append(spec.accession)
        patient.study_uids.append(spec.uid)
        patient.study_dates.append(date.strftime("%Y%m%d"))
        specs.append(spec)
    return specs


_PHANTOMS: dict[tuple[int, int], np.ndarray] = {}


def _phantom(rows: int, cols: int) -> np.ndarray:
    """A CT-like axial slice in HU + 1024: air, body, two lungs, a spine."""
    key = (rows, cols)
    if key not in _PHANTOMS:
        y, x = np.mgrid[0:rows, 0:cols]
        cy, cx = rows / 2, cols / 2
        img = np.full((rows, cols), -1000, dtype=np.int16)
        body = ((x - cx) / (0.45 * cols)) ** 2 + ((y - cy) / (0.35 * rows)) ** 2 <= 1
        img[body] = 40
        for side in (-1, 1):
            lung = ((x - cx - side * 0.2 * cols) / (0.15 * cols)) ** 2 + ((y - cy) / (0.25 * rows)) ** 2 <= 1
            img[lung] = -850
        spine = ((x - cx) / (0.05 * cols)) ** 2 + ((y - cy - 0.25 * rows) / (0.05 * rows)) ** 2 <= 1
        img[spine] = 700
        _PHANTOMS[key] = (img + 1024).astype(np.uint16)
    return _PHANTOMS[key]


def _pixels(rows: int, cols: int, index: int, rng: np.random.Generator) -> bytes:
    img = _phantom(rows, cols).astype(np.int32)
    noise = rng.normal(0, 12, size=img.shape).astype(np.int32)
    return np.clip(img + noise + (index % 7), 0, 4095).astype(np.uint16).tobytes()


def _base(patient: FakePatient, study: StudySpec, sop_class: str, sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(SAMPLE_UID_ROOT + "1")
    ds.SpecificCharacterSet = patient.charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    d = study.date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = d
    ds.StudyTime = "091512.250"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "092003"
    ds.AcquisitionDateTime = d + "092003.125+0100"
    ds.AccessionNumber = study.accession
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = "Avenue Albert Raimond, 42270 Saint-Priest-en-Jarez"
    ds.InstitutionalDepartmentName = "Imagerie thoracique"
    ds.StationName = "CHUSTE-CT01"
    ds.ReferringPhysicianName = patient.physicians[0]
    ds.PerformingPhysicianName = patient.physicians[1]
    ds.OperatorsName = patient.operator
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer
    other = Dataset()
    other.PatientID = patient.patient_id + "-OLD"
    other.IssuerOfPatientID = "IPP-ANCIEN"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = _age(dt.datetime.strptime(patient.birth_date, "%Y%m%d").date(), study.date)
    ds.PatientWeight = "72"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.StudyInstanceUID = study.uid
    ds.StudyID = study.study_id
    request = Dataset()
    request.AccessionNumber = study.accession
    request.RequestedProcedureID = "RP" + study.accession
    request.ScheduledProcedureStepID = "SPS" + study.study_id
    request.RequestedProcedureDescription = "Scanner thoracique"
    ds.RequestAttributesSequence = Sequence([request])
    return ds


def _study_text(kind: str) -> tuple[str, str, str, str]:
    """(modality, body part, study description, protocol)."""
    return {
        "chest": ("CT", "CHEST", "TDM THORAX SANS INJECTION", "THORAX COVID"),
        "chest-old": ("CT", "CHEST", "CT THORAX", "THORAX STANDARD"),
        "head": ("CT", "HEAD", "TDM CEREBRALE", "ENCEPHALE"),
        "mr": ("MR", "KNEE", "IRM GENOU", "GENOU"),
    }[kind]


def ct_slice(
    patient: FakePatient,
    study: StudySpec,
    series_uid: str,
    series_number: int,
    index: int,
    *,
    rows: int = 64,
    cols: int = 64,
    description: str = "THORAX 1.25 POUMON",
    localizer_uid: str | None = None,
    frame_of_reference: str | None = None,
    rng: np.random.Generator | None = None,
    sop_uid: str | None = None,
) -> Dataset:
    """One axial CT image of ``study``, with planted PHI and GE private elements."""
    rng = rng or np.random.default_rng(index)
    modality, body_part, study_desc, protocol = _study_text(study.kind)
    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    ds = _base(patient, study, sop_class, sop_uid or generate_uid(SAMPLE_UID_ROOT))
    ds.Modality = modality
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Revolution CT"
    ds.DeviceSerialNumber = "GE-SN-4471"
    ds.BodyPartExamined = body_part
    ds.StudyDescription = study_desc
    ds.SeriesDescription = description
    ds.ProtocolName = protocol
    ds.ImageComments = f"Contrôle Mme {patient.family} {patient.given}"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = index + 1
    ds.FrameOfReferenceUID = frame_of_reference or study.uid + ".9"
    ds.PositionReferenceIndicator = ""
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.ImagePositionPatient = [-175.0, -175.0, -100.0 + 1.25 * index]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = -100.0 + 1.25 * index
    ds.PixelSpacing = [0.68, 0.68]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "-600", "1600"
    ds.BurnedInAnnotation = "NO"
    if localizer_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = localizer_uid
        ds.ReferencedImageSequence = Sequence([ref])
    # GE private block: (0043,xx39) is in the safe-private table; (0009,xx01) is not.
    ge = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    ge.add_new(0x39, "IS", ["1000", "0", "0", "0"])
    iden = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    iden.add_new(0x01, "LO", "CHUSTE-CT01")
    # A site's own private block that carries PHI, with a private sequence inside.
    site = ds.private_block(0x0029, "SFR_TEST_PHI", create=True)
    site.add_new(0x10, "LO", patient.name.replace("^", " "))
    inner = Dataset()
    inner.PatientName = patient.name
    site.add_new(0x11, "SQ", Sequence([inner]))
    ds.PixelData = _pixels(rows, cols, index, rng)
    return ds


def _secondary(patient: FakePatient, study: StudySpec, series_uid: str, kind: str, sop_uid: str) -> Dataset:
    ds = _base(patient, study, SecondaryCaptureImageStorage, sop_uid)
    ds.Modality = "CT"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.StudyDescription = _study_text(study.kind)[2]
    ds.SeriesDescription = "Dose Report" if kind == "dose" else "Capture écran"
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"] if kind == "dose" else ["DERIVED", "SECONDARY"]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 999
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 32, 32
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(32 * 32)
    return ds


def iter_export(
    patients: list[FakePatient],
    *,
    seed: int = 0,
    rows: int = 64,
    cols: int = 64,
    slices: int = 6,
    extras: bool = True,
) -> Iterator[tuple[str, Dataset]]:
    """Yield (relative path, dataset) for every file of a synthetic export."""
    rng = random.Random(seed + 1)
    nprng = np.random.default_rng(seed)

    def uid() -> str:
        return SAMPLE_UID_ROOT + str(rng.randrange(10**30, 10**31))

    for p_index, patient in enumerate(patients):
        for s_index, study in enumerate(_studies_for(p_index, patient, rng, extras)):
            folder = f"P{p_index:04d}/S{s_index:02d}"
            chest = study.kind in ("chest", "chest-old")
            loc_uid = None
            if chest and extras:
                loc = ct_slice(patient, study, uid(), 1, 0, rows=rows, cols=cols, description="Topogramme",
                               rng=nprng, sop_uid=uid())
                loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
                loc_uid = loc.SOPInstanceUID
                yield f"{folder}/loc_0000.dcm", loc
            series = [("THORAX 1.25 POUMON", 2), ("MEDIASTIN 2.5", 3)] if chest else [("AXIAL", 2)]
            if not extras:
                series = series[:1]
            frame = study.uid + ".9"
            for desc, number in series:
                series_uid = uid()
                for i in range(slices):
                    ds = ct_slice(patient, study, series_uid, number, i, rows=rows, cols=cols, description=desc,
                                  localizer_uid=loc_uid, frame_of_reference=frame, rng=nprng, sop_uid=uid())
                    yield f"{folder}/ser{number:02d}_{i:04d}.dcm", ds
            if chest and extras:
                yield f"{folder}/dose_0000.dcm", _secondary(patient, study, uid(), "dose", uid())


def generate_export(
    out: Path,
    *,
    patients: int = 3,
    seed: int = 0,
    rows: int = 64,
    cols: int = 64,
    slices: int = 6,
    extras: bool = True,
) -> SampleExport:
    """Write a synthetic PACS export under ``out`` and say what it holds.

    ``extras=False`` gives only one axial chest series per patient (benchmarks);
    with extras, patients also get follow-ups, localizers, dose reports, head CT,
    out-of-window chest CT and MR studies.
    """
    out = Path(out)
    people = make_patients(patients, seed)
    files = []
    for rel, ds in iter_export(people, seed=seed, rows=rows, cols=cols, slices=slices, extras=extras):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SampleExport(root=out, files=files, patients=people)

