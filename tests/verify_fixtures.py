"""Fixtures for the verify tests: a synthetic export and a hand-made clean de-identified copy.

The clean copy is made here with plain pydicom, *not* with the engine, so that verify's tests do
not depend on what they check: names, IDs, addresses, physicians, institution, free text and
private elements go; UIDs are remapped (keyed hash, consistently, references included); dates
move by a per-patient offset; Patient Identity Removed = YES. Dose reports (burned-in) are left
out, as the engine quarantines them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from sfr_gateway.sample import SampleExport, generate_export

_KEY = b"verify-tests"
_DROP = (
    "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "OtherPatientIDsSequence", "RequestAttributesSequence", "ImageComments", "StationName",
    "DeviceSerialNumber", "IssuerOfPatientID",
)
_KEEP_UID_KEYWORDS = ("SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
                      "ImplementationClassUID")


def _h(purpose: str, value: str) -> int:
    return int.from_bytes(hashlib.sha256(_KEY + purpose.encode() + b"\0" + value.encode()).digest()[:16], "big")


def new_uid(uid: str) -> str:
    """The test's own keyed UID remapping."""
    return f"2.25.{_h('uid', uid)}"


def _shift(value: str, days: int) -> str:
    day = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + value[8:]


def _clean(ds: Dataset, offset: int) -> None:
    for keyword in _DROP:
        if keyword in ds:
            delattr(ds, keyword)
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _clean(item, offset)
        elif elem.VR == "UI" and elem.keyword not in _KEEP_UID_KEYWORDS and elem.value:
            elem.value = new_uid(str(elem.value))
        elif elem.VR in ("DA", "DT") and elem.value:
            elem.value = _shift(str(elem.value), offset)


def hand_deidentify(src: Path, out: Path) -> dict[Path, str]:
    """A clean de-identified copy of the export at ``src`` under OUT/patient/study/series/.

    Returns each written file with the source Patient ID it came from."""
    written: dict[Path, str] = {}
    for path in sorted(src.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if ds.get("BurnedInAnnotation") == "YES":
            continue
        pid = str(ds.PatientID)
        pseudo = f"SFRT{_h('patient', pid) % 10**8:08d}"
        offset = -(30 + _h("offset", pid) % 300)
        ds.remove_private_tags()
        _clean(ds, offset)
        ds.PatientName = pseudo
        ds.PatientID = pseudo
        ds.AccessionNumber = f"ACC{_h('acc', str(ds.AccessionNumber)) % 10**9}"
        ds.StudyID = f"S{_h('sid', str(ds.StudyID)) % 10**6}"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "verify test fixture"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        target = out / pseudo / ds.StudyInstanceUID[-12:] / ds.SeriesInstanceUID[-12:] / f"{ds.InstanceNumber:04d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        written[target] = pid
    return written


@dataclass
class CleanSet:
    """A synthetic export and its hand-made clean copy."""

    export: SampleExport
    src: Path
    out: Path
    files: list[Path]
    patient_of: dict[Path, str]
    """Output file -> source Patient ID."""

    def copy(self, dest: Path) -> CleanSet:
        """A fresh copy of the clean output, to plant PHI into."""
        shutil.copytree(self.out, dest)
        moved = {dest / f.relative_to(self.out): pid for f, pid in self.patient_of.items()}
        return CleanSet(self.export, self.src, dest, list(moved), moved)

    def image_of(self, patient_index: int) -> Path:
        """An axial image (it references a localizer) of one source patient."""
        pid = self.export.patients[patient_index].patient_id
        for path in self.files:
            if self.patient_of[path] == pid and "ReferencedImageSequence" in pydicom.dcmread(path):
                return path
        raise LookupError(pid)

    def edit(self, path: Path, change: Callable[[Dataset], None]) -> None:
        """Load one output file, change it, save it back."""
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="session")
def clean_set(tmp_path_factory: pytest.TempPathFactory) -> CleanSet:
    """Three synthetic patients (both character sets), and a clean de-identified copy."""
    root = tmp_path_factory.mktemp("verify-clean")
    export = generate_export(root / "src", patients=3, seed=0)
    written = hand_deidentify(root / "src", root / "out")
    return CleanSet(export, root / "src", root / "out", list(written), written)


@pytest.fixture()
def planted(clean_set: CleanSet, tmp_path: Path) -> CleanSet:
    """A copy of the clean output that a test may change."""
    return clean_set.copy(tmp_path / "out")
