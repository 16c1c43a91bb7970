"""The engine's own rules where Table E.1-1 leaves a choice (issue 15), on independent files:
pydicom's test files and the pydicom-data package. One test per rule; each names the rule the
change records carry (the audit shows the same words)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from sfr_gateway.deid import deidentify_file
from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, reread, to_bytes
from tests.independent_data import data_file


def _deid(src: str | bytes, profile: str = "basic", *options: str):
    path = data_file(src) if isinstance(src, str) else src
    result = deidentify_file(path, plan_for(profile, *options), KEYS_A)
    return result, reread(result.data)


def _rules(result, keyword: str) -> list[str]:
    return [c.rule for c in result.changes if c.keyword == keyword]


def test_combined_codes_resolve_with_the_type_in_the_files_own_iod() -> None:
    # Enhanced MR: Content Date/Time and Acquisition DateTime are Type 1, Device Serial Number
    # is Type 1 (Enhanced General Equipment): a dummy or the (empty) value, never removed/emptied
    result, out = _deid("emri_small_jpeg_ls_lossless.dcm")
    assert out.ContentDate == "19000101" and out.ContentTime and out.AcquisitionDateTime
    assert "DeviceSerialNumber" in out
    assert any("IOD Type resolution: Type 1 in enhanced-mr-image -> D" in r for r in _rules(result, "ContentDate"))
    # Enhanced CT: Acquisition Context Sequence is Type 2: emptied, not removed
    result, out = _deid("eCT_Supplemental.dcm")
    assert "AcquisitionContextSequence" in out and len(out.AcquisitionContextSequence) == 0
    assert out.DeviceSerialNumber == "ANONYMIZED"
    # CT: Type 3 there, so the same code removes
    _, out = _deid(to_bytes(minimal_ct()))
    assert "AcquisitionContextSequence" not in out


def test_combined_codes_inside_sequences_use_the_attributes_path() -> None:
    plan = plan_for("basic")
    # Referenced SOP Instance UID inside Referenced Image Sequence: Type 1 at that path (U)
    kind, iod = plan.attribute_type((0x00081140, 0x00081155), "1.2.840.10008.5.1.4.1.1.2")
    assert (kind, iod) == (1, "ct-image")
    # a functional-group macro attribute is found in the Shared and the Per-frame sequences
    paths = [p for p in plan.iod_types["1.2.840.10008.5.1.4.1.1.2.1"].types if p[0] in (0x52009229, 0x52009230)]
    assert {p[0] for p in paths} == {0x52009229, 0x52009230}


def test_un_elements_are_read_with_their_dictionary_vr() -> None:
    result, out = _deid("explicit_VR-UN.dcm", "sfr-covid")
    source = pydicom.dcmread(data_file("explicit_VR-UN.dcm"))
    assert out["StudyDate"].VR == "DA" and out.StudyDate != source.StudyDate and len(out.StudyDate) == 8
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.StudyDescription == "Pancreas" and out.SeriesDescription == "Pancreas"  # cleaned, not dropped
    assert out["StudyDescription"].VR == "LO"
    assert out.SOPInstanceUID.startswith("2.25.") and out["SOPInstanceUID"].VR == "UI"
    assert any("stored as UN, read with its dictionary VR DA" in r for r in _rules(result, "StudyDate"))
    # an element of unknown kind stays UN and is not kept under C
    ds = minimal_ct()
    ds.add_new(0x00181030, "UN", b"CHEST  ")  # Protocol Name, stored as UN: read as LO, cleaned
    _, out = _deid(to_bytes(ds), "sfr-covid")
    assert out["ProtocolName"].VR == "LO" and out.ProtocolName == "CHEST"


@pytest.mark.parametrize(("option", "keyword", "vr"), [
    ("retain-long-modified-dates", "CertifiedTimestamp", "OB"),
    ("retain-long-modified-dates", "FrameOriginTimestamp", "OB"),
    ("retain-long-full-dates", "CertifiedTimestamp", "OB"),
    ("clean-descriptors", "DeviceSettingDescription", "UN"),
    ("clean-descriptors", "MakerNote", "OB"),
])
def test_binary_values_under_c_or_k_are_not_kept(option: str, keyword: str, vr: str) -> None:
    ds = minimal_ct()
    secret = b"DUPONT^JEAN 19600102 CHU Pessac\x00"
    ds.add_new(keyword, vr, secret)
    result, out = _deid(to_bytes(ds), "basic", option)
    assert keyword not in out
    assert b"DUPONT" not in result.data
    assert any("binary value under C/K" in r for r in _rules(result, keyword))


def test_a_binary_value_the_iod_requires_gets_a_zero_dummy() -> None:
    plan = plan_for("basic", "clean-descriptors")
    plan.iod_types["1.2.840.10008.5.1.4.1.1.2"].types[(0x0016002B,)] = 1  # pretend Maker Note were Type 1
    try:
        ds = minimal_ct()
        ds.add_new("MakerNote", "OB", b"DUPONT")
        result = deidentify_file(to_bytes(ds), plan, KEYS_A)
        assert reread(result.data).MakerNote == b"\x00\x00"
    finally:
        del plan.iod_types["1.2.840.10008.5.1.4.1.1.2"].types[(0x0016002B,)]
        plan._resolved.clear()


@pytest.mark.parametrize("profile", ["basic", "sfr-covid"])
def test_overlay_and_curve_groups_are_removed_whole(profile: str) -> None:
    ds = minimal_ct()
    overlay = pydicom.dcmread(data_file("examples_overlay.dcm"))
    for elem in overlay:
        if elem.tag.group == 0x6000:
            ds.add(elem)
    ds.add_new(0x50000005, "US", 2)  # Curve Dimensions
    ds.add_new(0x50003000, "OW", b"\x01\x02" * 8)  # Curve Data
    ds.add_new(0x50002500, "LO", "DUPONT")  # Curve Label
    result, out = _deid(to_bytes(ds), profile)
    assert not [e.tag for e in out if e.tag.group & 0xFF00 in (0x5000, 0x6000)]
    words = "Clean Graphics: the whole overlay (60xx) group" if profile == "sfr-covid" else "whole overlay (60xx) group"
    assert any(words in c.rule for c in result.changes if c.tag >> 16 == 0x6000)
    assert b"DUPONT" not in result.data


@pytest.mark.tool("dciodvfy", package="dicom3tools")
@pytest.mark.parametrize("options", [(), ("clean-graphics",)])
def test_overlay_removal_keeps_the_mr_image_valid(tmp_path: Path, options: tuple[str, ...]) -> None:
    result, ds = _deid("MR-SIEMENS-DICOM-WithOverlays.dcm", "basic", *options)
    assert not [e.tag for e in ds if e.tag.group & 0xFF00 == 0x6000]  # cleaned means removed whole
    out = tmp_path / "out.dcm"
    out.write_bytes(result.data)
    run = subprocess.run([shutil.which("dciodvfy") or "dciodvfy", str(out)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert "Overlay" not in "\n".join(line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error"))


def test_an_empty_value_stays_empty() -> None:
    ds = minimal_ct()
    ds.AccessionNumber = ""
    ds.StudyID = ""
    result, out = _deid(to_bytes(ds), "sfr-covid")
    assert out.AccessionNumber == "" and out.StudyID == ""
    other = minimal_ct(patient_id="87654321", study_uid="1.2.826.0.1.3680043.10.1374.8.2")
    other.AccessionNumber = "A1"
    _, second = _deid(to_bytes(other), "sfr-covid")
    assert second.AccessionNumber not in ("", "ANONYMIZED")
    # Basic Z: emptied, never a constant
    ds = minimal_ct()
    _, out = _deid(to_bytes(ds), "basic")
    assert out.AccessionNumber == "" and out.PatientName == ""


def test_an_empty_value_record_names_the_rule() -> None:
    ds = minimal_ct()
    ds.AccessionNumber = ""
    result = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A, record_kept=True)
    assert any("empty value stays empty" in r for r in _rules(result, "AccessionNumber"))
