"""An image without Pixel Data is held, never released (issue 21, the lead's decision).

A CT slice cut exactly at an element boundary before its Image Pixel module is a well-formed,
smaller dataset: no length check can see the cut. Its SOP class says it is an image (its IOD
requires Pixel Data, ``sfr_gateway/data/pixel-data-iods.json``), so ``scan`` (headers only, but it
sees whether Pixel Data follows), ``deidentify`` and ``run`` hold it as ``no-pixel-data``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sfr_gateway.crypto.age import Identity
from sfr_gateway.deid import tables
from sfr_gateway.deid.files import deidentify_file
from sfr_gateway.errors import DicomError
from sfr_gateway.ledger import open_ledger
from sfr_gateway.sample import SampleExport
from sfr_gateway.scan.header import UNREADABLE_REASONS, read_header
from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, to_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no Image Pixel module
ELIGIBLE = 84  # instances of the sample export that selection keeps (see test_foundation_scan)


def _cut_before_pixel_module(data: bytes) -> bytes:
    """``data`` cut at the element boundary just before (0028,0002), the Image Pixel module's first."""
    samples = pydicom.dcmread(io.BytesIO(data))._dict[0x00280002]  # pydicom 3 internal: the element as read
    return data[:samples.value_tell - 8]  # its header: 8 bytes (US, explicit or implicit VR)


def _no_image_object(sop_class: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1374.8.1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1374.8.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1374.8.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1374.8.3"
    ds.PatientID = "12345678"
    ds.Modality = "SR" if sop_class == BASIC_TEXT else "CT"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_the_table_of_image_sop_classes() -> None:
    classes = tables.pixel_data_iods()
    assert len(classes) == 56
    assert {CT, "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7",
            "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.128"} <= classes  # CT, Enhanced CT, MR, SC, CR, PET
    # no Image Pixel module, or one that is only conditional: no Pixel Data required
    assert not {BASIC_TEXT, "1.2.840.10008.5.1.4.1.1.481.2", "1.2.840.10008.5.1.4.1.1.30",
                "1.2.840.10008.5.1.4.1.1.104.1"} & classes  # SR, RT Dose, Parametric Map, Encapsulated PDF


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_a_ct_slice_cut_before_its_pixel_module_is_held_everywhere(tmp_path: Path, implicit: bool) -> None:
    data = to_bytes(minimal_ct(rows=8, cols=8), implicit=implicit)
    cut = _cut_before_pixel_module(data)
    ds = pydicom.dcmread(io.BytesIO(cut))
    assert ds.SOPClassUID == CT and "Rows" not in ds and "PixelData" not in ds and len(cut) < len(data) - 64
    path = tmp_path / "cut.dcm"
    path.write_bytes(cut)
    for source in (cut, path):
        with pytest.raises(DicomError) as info:
            deidentify_file(source, plan_for("basic"), KEYS_A)
        assert info.value.reason == "no-pixel-data" and "re-export" in info.value.detail
    with pytest.raises(DicomError) as info:
        read_header(str(path))
    assert info.value.reason == "no-pixel-data"
    assert "truncated at an element boundary" in UNREADABLE_REASONS["no-pixel-data"]
    whole = tmp_path / "whole.dcm"
    whole.write_bytes(data)
    assert read_header(str(whole))[0].sop_instance_uid == ds.SOPInstanceUID  # the whole slice is fine


SR_PROFILE = """
name = "sr-test"
extends = "basic"
[sop_classes]
allow = ["CTImageStorage", "BasicTextSRStorage"]
"""


def test_objects_that_need_no_pixel_data_still_pass(tmp_path: Path) -> None:
    """A Basic Text SR has no Image Pixel module: scan indexes it, a profile that admits it
    de-identifies it."""
    path = tmp_path / "sr.dcm"
    path.write_bytes(_no_image_object(BASIC_TEXT))
    assert read_header(str(path))[0].sop_class_uid == BASIC_TEXT
    profile = tmp_path / "sr-test.toml"
    profile.write_text(SR_PROFILE, encoding="utf-8")
    out = pydicom.dcmread(io.BytesIO(deidentify_file(path, plan_for(str(profile)), KEYS_A).data))
    assert out.PatientIdentityRemoved == "YES"


def test_a_pixel_url_is_no_pixels_but_float_pixels_are(tmp_path: Path) -> None:
    """A Pixel Data Provider URL (JPIP) points at the site's PACS and carries no pixels: held.
    Float Pixel Data are pixels: the rule does not fire (the engine's other checks still apply)."""
    ds = pydicom.dcmread(io.BytesIO(_no_image_object(CT)))
    ds.PixelDataProviderURL = "https://pacs.example/jpip"
    path = tmp_path / "jpip.dcm"
    ds.save_as(path, enforce_file_format=True)
    for check in (lambda: read_header(str(path)), lambda: deidentify_file(path, plan_for("basic"), KEYS_A)):
        with pytest.raises(DicomError) as info:
            check()
        assert info.value.reason == "no-pixel-data"
    del ds.PixelDataProviderURL
    ds.FloatPixelData = b"\0" * 16
    ds.save_as(path, enforce_file_format=True)
    assert read_header(str(path))[0].sop_class_uid == CT
    try:
        deidentify_file(path, plan_for("basic"), KEYS_A)
    except DicomError as exc:
        assert exc.reason != "no-pixel-data"


def test_pydicom_stub_ct_files_are_held() -> None:
    """pydicom's TINY_ALPHA CT files (a DICOMDIR test set) are CT images without pixels."""
    stubs = sorted(p for p in get_testdata_files() if "TINY_ALPHA" in p and os.path.isfile(p)
                   and not p.endswith("DICOMDIR"))
    assert len(stubs) >= 50
    for path in stubs:
        with pytest.raises(DicomError) as info:
            deidentify_file(path, plan_for("basic"), KEYS_A)
        assert info.value.reason in ("no-pixel-data", "not-dicom", "missing-sop-class"), path


def test_scan_deidentify_and_run_hold_it_and_release_the_rest(tmp_path: Path, sample_export: SampleExport,
                                                              export_copy: Path, cli) -> None:
    """One eligible CT slice of the export is cut before its pixel module after a first scan:
    ``scan`` lists it as unreadable, ``deidentify`` quarantines it, ``run`` delivers the others."""
    identity = Identity.generate()
    home = tmp_path / "home"
    init = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
               "--export", export_copy)
    assert init.exit_code == 0, init.stderr
    assert cli("--home", home, "scan", export_copy).exit_code == 0
    with open_ledger(home / "state.db") as ledger:
        eligible = sorted(bytes(p) for (p,) in ledger.conn.execute("SELECT path FROM instances WHERE eligible = 1"))
    assert len(eligible) == ELIGIBLE
    victim = Path(os.fsdecode(eligible[len(eligible) // 2]))
    victim.write_bytes(_cut_before_pixel_module(victim.read_bytes()))
    human = cli("--home", home, "scan", export_copy)
    assert "1 unreadable" in human.stdout and "no-pixel-data" in human.stdout and "re-export it" in human.stdout
    scanned = cli("--home", home, "scan", export_copy, "--json")
    assert scanned.exit_code == 0, scanned.stderr
    assert json.loads(scanned.stdout)["unreadable"] == {"no-pixel-data": 1}

    out = tmp_path / "deidentified"
    result = cli("--home", home, "deidentify", export_copy, "--output", out, "--json")
    summary = json.loads(result.stdout)
    assert summary["quarantined_by_reason"].get("no-pixel-data") == 1
    assert summary["released"] + summary["quarantined"] + summary.get("duplicates", 0) == summary["seen"]

    for patient in sample_export.patients:
        consent = cli("--home", home, "consent", "set", patient.patient_id, "consented", "--issuer", patient.issuer,
                      "--date", "2026-01-15", "--source", "form")
        assert consent.exit_code == 0, consent.stderr
    run = cli("--home", home, "run", "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["release"]["instances"] == ELIGIBLE - 1
