"""Real files: every pydicom bundled file, character sets, and bad or unusual encodings."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from sfr_gateway.deid import deidentify_file
from sfr_gateway.errors import DicomError
from tests.deid_fixtures import (
    KEYS_A,
    minimal_ct,
    norm,
    plan_for,
    reread,
    sequence_of,
    to_bytes,
)

BUNDLED = sorted({p for p in get_testdata_files() + get_charset_files() if Path(p).is_file()})
REASONS = {"not-dicom", "unreadable", "unparsable", "truncated", "unknown-transfer-syntax", "missing-sop-class",
           "sop-class-not-allowed", "missing-uid", "burned-in-suspected", "pixel-geometry", "unwritable",
           "burned-in-mask-unsupported", "no-pixel-data"}
CHARSET_PROFILE = """
name = "charset-test"
extends = "sfr-covid"
burned_in_rules = ""
[sop_classes]
allow = ["CTImageStorage", "SecondaryCaptureImageStorage", "MRImageStorage"]
"""


@pytest.mark.parametrize("profile", ["basic", "sfr-covid"])
def test_every_bundled_file_released_or_quarantined(profile: str) -> None:
    plan = plan_for(profile)
    released, refused = 0, 0
    for path in BUNDLED:
        try:
            result = deidentify_file(path, plan, KEYS_A)
        except DicomError as exc:
            assert exc.reason in REASONS, (path, exc.reason)
            refused += 1
            continue
        out = reread(result.data)
        assert out.PatientIdentityRemoved == "YES"
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        released += 1
    assert released > (40 if profile == "basic" else 3) and refused > 20


def test_clean_pixel_data_is_byte_identical_across_encodings() -> None:
    plan = plan_for("basic")
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                 "MR_small_jp2klossless.dcm", "SC_rgb_small_odd.dcm"):
        path = get_testdata_file(name)
        src = pydicom.dcmread(path)
        try:
            out = reread(deidentify_file(path, plan, KEYS_A).data)
        except DicomError as exc:
            assert name.startswith("SC_") and exc.reason == "burned-in-suspected"
            continue
        assert out.PixelData == src.PixelData, name
        assert out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID, name


def test_deflated_input_is_processed(tmp_path: Path) -> None:
    ds = minimal_ct()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    result = deidentify_file(buf.getvalue(), plan_for("sfr-covid"), KEYS_A)
    out = reread(result.data)
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    assert out.PixelData == ds.PixelData and out.PatientName != ds.PatientName
    with pytest.raises(DicomError):  # a corrupt deflate stream is refused, not released
        data = buf.getvalue()
        deidentify_file(data[:-40] + bytes(40), plan_for("sfr-covid"), KEYS_A)


def test_big_endian_and_implicit_inputs() -> None:
    plan = plan_for("sfr-covid")
    for implicit, little in ((True, True), (False, False)):
        data = to_bytes(minimal_ct(), implicit=implicit, little=little)
        out = reread(deidentify_file(data, plan, KEYS_A).data)
        assert out.StudyDate != "20200315" and out.PatientName != "DUPONT^JEAN"
        assert out.PixelData == minimal_ct().PixelData


def test_raw_dataset_without_file_meta_gets_proper_meta() -> None:
    ds = minimal_ct()
    del ds.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)  # no preamble, no meta
    assert buf.getvalue()[128:132] != b"DICM"
    out = reread(deidentify_file(buf.getvalue(), plan_for("sfr-covid"), KEYS_A).data)
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert out.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


@pytest.mark.parametrize("cut", [0, 10, 131, 200, 400, 700, 1100, -300, -1])
def test_truncated_files_are_never_released(cut: int) -> None:
    data = to_bytes(minimal_ct(rows=32, cols=32))
    with pytest.raises(DicomError) as info:
        deidentify_file(data[:cut], plan_for("sfr-covid"), KEYS_A)
    assert info.value.reason in REASONS


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_truncated_files_are_never_released_at_any_cut(tmp_path: Path, implicit: bool) -> None:
    """Every strict prefix of a CT slice, in memory and on disk (the disk read stops before the
    pixels and reads them apart), is refused (issue 21): a cut inside a value, inside an element
    header or inside the pixels as ``truncated``; a cut at an element boundary as ``truncated`` once
    the Image Pixel module began, before it as ``no-pixel-data`` (a CT image without Pixel Data:
    nothing in the file shows the cut, so the SOP class's IOD decides)."""
    ds = minimal_ct(rows=8, cols=8)
    request = Dataset()
    request.RequestedProcedureDescription = "THORAX"
    ds.RequestAttributesSequence = sequence_of(request)
    data = to_bytes(ds, implicit=implicit)
    plan = plan_for("sfr-covid")
    deidentify_file(data, plan, KEYS_A)  # the whole file is fine
    raw = list(pydicom.dcmread(io.BytesIO(data))._dict.values())  # pydicom 3 internal: elements as read
    boundaries = {e.value_tell + e.length for e in raw if hasattr(e, "value_tell")}
    sop_class_end = next(e.value_tell + e.length for e in raw if e.tag == 0x00080016)  # SOP Class UID read
    pixel_module = data.index(b"\x28\x00\x02\x00", 132)  # (0028,0002) Samples per Pixel: the module begins
    path = tmp_path / "cut.dcm"
    reasons: dict[str, set[int]] = {}
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        for where, source in (("memory", data[:cut]), ("disk", path)):
            with pytest.raises(DicomError) as info:
                deidentify_file(source, plan, KEYS_A)
                pytest.fail(f"{where}: cut at byte {cut} of {len(data)} released")
            assert info.value.reason in REASONS, (where, cut, info.value.reason)
            reasons.setdefault(info.value.reason, set()).add(cut)
    no_pixels = reasons.get("no-pixel-data", set())
    assert no_pixels and all(c in boundaries and sop_class_end <= c <= pixel_module for c in no_pixels)
    assert len(data) > 900


def test_not_dicom_and_refused_sop_classes(tmp_path: Path) -> None:
    plan = plan_for("sfr-covid")
    for data in (b"", b"hello world\n" * 50, zlib.compress(b"x" * 1000)):
        with pytest.raises(DicomError):
            deidentify_file(data, plan, KEYS_A)
    for name in ("rtplan.dcm", "MR_small.dcm", "waveform_ecg.dcm", "rtdose.dcm", "examples_rgb_color.dcm"):
        with pytest.raises(DicomError) as info:
            deidentify_file(get_testdata_file(name), plan, KEYS_A)
        assert info.value.reason == "sop-class-not-allowed"
        assert "1.2.840.10008" in info.value.detail


def _charset_plan(tmp_path: Path):
    path = tmp_path / "charset-test.toml"
    path.write_text(CHARSET_PROFILE, encoding="utf-8")
    return plan_for(str(path))


def test_charset_files_are_cleaned_of_their_patient_name(tmp_path: Path) -> None:
    plan = _charset_plan(tmp_path)
    checked = 0
    for path in get_charset_files():
        src = pydicom.dcmread(path, force=True)
        if "PatientName" not in src or "SOPInstanceUID" not in src or not str(src.PatientName).strip():
            continue
        family = str(src.PatientName).split("^")[0].split("=")[0].strip()
        if len(family) < 2:
            continue
        src.StudyDescription = f"TDM THORAX {family}"
        try:
            result = deidentify_file(to_bytes(src, little=True, implicit=False), plan, KEYS_A)
        except DicomError as exc:
            assert exc.reason in REASONS
            continue
        out = reread(result.data)
        assert out.StudyDescription == "TDM THORAX", (Path(path).name, out.StudyDescription)
        assert norm(family) not in norm(str(out.PatientName))
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("charset,family", [("ISO_IR 100", "LEFÈVRE"), ("ISO_IR 192", "Benoît"),
                                            ("ISO_IR 100", "Garçon"), ("ISO_IR 192", "Zoé")])
def test_accented_names_caught_in_descriptors_and_nested_charsets(charset: str, family: str) -> None:
    ds = minimal_ct(name=f"{family}^Hélène", charset=charset)
    ds.StudyDescription = f"CT THORAX {family.upper()}"
    ds.SeriesDescription = "CHEST W/O 1.25mm LUNG"
    ds.ProtocolName = "CT THORAX SANS INJECTION"
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"  # a set overridden inside a sequence item
    item.RequestedProcedureDescription = f"Scanner thoracique Mme {family} hélène"
    ds.RequestAttributesSequence = sequence_of(item)
    out = reread(deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A).data)
    assert out.StudyDescription == "CT THORAX"
    assert out.SeriesDescription == "CHEST W/O 1.25mm LUNG"
    assert out.ProtocolName == "CT THORAX SANS INJECTION"
    assert out.RequestAttributesSequence[0].RequestedProcedureDescription == "Scanner thoracique Mme"


def test_deeply_nested_sequences_are_refused_not_crashing() -> None:
    depth = 5000
    head = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    tail = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    nested = head * depth + tail * depth  # Referenced Image Sequence inside itself, 5000 deep
    data = to_bytes(minimal_ct()) + nested  # appended after Pixel Data: readers take it
    try:
        result = deidentify_file(data, plan_for("sfr-covid"), KEYS_A)
    except DicomError as exc:
        assert exc.reason in REASONS
    else:
        assert reread(result.data).PatientIdentityRemoved == "YES"
