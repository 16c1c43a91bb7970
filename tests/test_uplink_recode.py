"""Lossless re-encoding of released images (issue 20): bit-exact for every admitted image type,
decoded by pydicom's plugins and by dcmtk's dcmdjpls; what is left as it came; no new dciodvfy error."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_fixtures import minimal_ct, plan_for, pz_for, write_file
from independent_data import data_file
from pydicom.pixels import iter_pixels, pixel_array
from pydicom.uid import UID
from tool_fixtures import require_tool

from sfr_gateway.deid.files import deidentify_file
from sfr_gateway.deid.recode import CODECS, JPEG_LS_LOSSLESS, decoded_digest, geometry, reencode
from sfr_gateway.home.config import IMAGE_COMPRESSIONS

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Every SOP class a shipped profile admits, with its Modality (a new one must be added here).
ADMITTED = {
    "CTImageStorage": "CT", "EnhancedCTImageStorage": "CT", "MRImageStorage": "MR", "EnhancedMRImageStorage": "MR",
    "ComputedRadiographyImageStorage": "CR", "DigitalXRayImageStorageForPresentation": "DX",
    "PositronEmissionTomographyImageStorage": "PT", "NuclearMedicineImageStorage": "NM",
    "SecondaryCaptureImageStorage": "OT",
}
# (bits allocated, bits stored, signed, frames, samples, planar configuration)
PIXELS = [
    (16, 16, True, 1, 1, 0), (16, 12, True, 3, 1, 0), (16, 12, False, 1, 1, 0), (16, 14, False, 2, 1, 0),
    (16, 16, False, 1, 1, 0), (8, 8, False, 2, 1, 0), (8, 8, True, 1, 1, 0), (16, 9, True, 1, 1, 0),
]
COLOUR = [(8, 8, False, 1, 3, 0), (8, 8, False, 2, 3, 1)]  # secondary captures only


def test_every_admitted_sop_class_is_covered() -> None:
    admitted = plan_for("basic").sop_allow | plan_for("sfr-covid").sop_allow
    assert {str(UID(pydicom.uid.__dict__[k])) for k in ADMITTED} == set(admitted)
    assert set(IMAGE_COMPRESSIONS) == set(CODECS) | {"none"}


def _values(rows: int, cols: int, bits: int, signed: bool, frames: int, samples: int, seed: int) -> np.ndarray:
    """Image-like values (a gradient, noise, and both ends of the range) in decoder order."""
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    y, x = np.mgrid[0:rows, 0:cols]
    base = lo + (x * 7 + y * 3) % (hi - lo + 1)
    arr = np.stack([np.clip(base + rng.integers(-3, 4, size=base.shape) * (f + 1), lo, hi) for f in range(frames)])
    arr[:, 0, 0], arr[:, 0, 1] = lo, hi
    if samples > 1:
        arr = np.stack([arr, np.flip(arr, 2), (arr + 5).clip(lo, hi)], axis=-1)
    return arr


def synthetic(path: Path, keyword: str, spec: tuple[int, int, bool, int, int, int], *, implicit: bool = False,
              seed: int = 0) -> tuple[Path, np.ndarray]:
    """A file of SOP class ``keyword`` with pixels per ``spec``; returns it and its pixel values."""
    allocated, stored, signed, frames, samples, planar = spec
    rows, cols = 24, 40
    values = _values(rows, cols, stored, signed, frames, samples, seed)
    dtype = ("<i" if signed else "<u") + str(allocated // 8)
    native = values.astype(dtype)
    if samples > 1 and planar:
        native = native.transpose(0, 3, 1, 2)
    ds = minimal_ct(rows=rows, cols=cols, sop_uid=f"1.2.826.0.1.3680043.10.1374.8.{seed}")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.__dict__[keyword]
    ds.Modality = ADMITTED[keyword]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, int(signed)
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples > 1 else "MONOCHROME2"
    if samples > 1:
        ds.PlanarConfiguration = planar
    if frames > 1 or keyword.startswith("Enhanced"):
        ds.NumberOfFrames = frames
    if keyword == "SecondaryCaptureImageStorage":
        ds.Manufacturer = "ACME"  # the mask layout of MASKED lets it through (its pixels blanked in a corner)
        ds.BurnedInAnnotation = "YES"
    data = native.tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    write_file(path, ds, implicit=implicit)
    return path, values


MASKED = '''
name = "masked"
extends = "basic"
[[mask]]
name = "acme corner"
when = { SOPClassUID = '^1\\.2\\.840\\.10008\\.5\\.1\\.4\\.1\\.1\\.7$', Manufacturer = 'ACME' }
regions = [[0, 0, 2, 1]]
'''


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory):
    profile = tmp_path_factory.mktemp("profile") / "masked.toml"
    profile.write_text(MASKED)
    return plan_for(str(profile), "clean-pixel-data")


def _masked(values: np.ndarray, keyword: str) -> np.ndarray:
    if keyword == "SecondaryCaptureImageStorage":
        values = values.copy()
        values[:, 0:1, 0:2] = 0
    return values


def _pixels_of(path: Path) -> np.ndarray:
    arr = pixel_array(str(path), raw=True)
    frames = pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1
    return arr if int(frames) > 1 else arr[np.newaxis]


CASES = [(k, spec) for k in ADMITTED for spec in PIXELS] + [("SecondaryCaptureImageStorage", c) for c in COLOUR]


CASE_IDS = [f"{k[:-12]}-{'-'.join(map(str, s))}" for k, s in CASES]


def dciodvfy_errors(path: Path) -> set[str]:
    """dciodvfy's error lines for ``path`` (dicom3tools, through tests/tool_fixtures.py)."""
    run = subprocess.run([require_tool("dciodvfy", package="dicom3tools"), str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


def native_output(result) -> bytes:
    """The de-identified file as ``none`` sends it: its header, then the pixel bytes left in the source."""
    if result.pixels is None:
        return result.data
    return result.head + Path(result.pixels.path).read_bytes()[result.pixels.offset:]


@pytest.mark.parametrize("keyword,spec", CASES, ids=CASE_IDS)
def test_bit_exact_round_trip_pydicom_and_dcmdjpls(tmp_path: Path, plan, keyword: str,
                                                   spec: tuple[int, int, bool, int, int, int]) -> None:
    src, values = synthetic(tmp_path / "src.dcm", keyword, spec, implicit=spec[3] == 1 and spec[1] == 12,
                            seed=len(keyword) + spec[1])
    expected = _masked(values, keyword)
    result = deidentify_file(src, plan, pz_for(plan), record=False, pixels_in_place=True)
    recoded = reencode(result, "jpeg-ls")
    assert recoded is not None and recoded.transfer_syntax == JPEG_LS_LOSSLESS
    out = tmp_path / "out.dcm"
    out.write_bytes(recoded.data)
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == JPEG_LS_LOSSLESS and ds["PixelData"].is_undefined_length
    assert ds.get("PlanarConfiguration", 0) == 0 and ds.PatientIdentityRemoved == "YES"
    decoded = _pixels_of(out)  # pydicom's plugin (pyjpegls)
    assert decoded.shape[:3] == expected.shape[:3] and np.array_equal(decoded.reshape(expected.shape), expected)
    g = geometry(ds)
    assert g is not None and decoded_digest(iter_pixels(str(out), raw=True), g) == recoded.pixel_sha256
    assert recoded.pixel_sha256 == hashlib.sha256(expected.astype(g.dtype).tobytes()).hexdigest()
    native = tmp_path / "native.dcm"  # dcmtk's JPEG-LS decoder, then pydicom reads the values
    run = subprocess.run([require_tool("dcmdjpls", package="dcmtk"), str(out), str(native)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert pydicom.dcmread(native).file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(_pixels_of(native).reshape(expected.shape), expected)


@pytest.mark.parametrize("keyword,spec", CASES, ids=CASE_IDS)
def test_no_new_dciodvfy_error_on_any_admitted_image_type(tmp_path: Path, plan, keyword: str,
                                                         spec: tuple[int, int, bool, int, int, int]) -> None:
    """The re-encoded file has no dciodvfy error that the same file sent natively does not have
    (the synthetic headers are minimal: their own errors are the baseline, not the point)."""
    src, _ = synthetic(tmp_path / "src.dcm", keyword, spec, seed=len(keyword) + spec[1])
    result = deidentify_file(src, plan, pz_for(plan), record=False, pixels_in_place=True)
    before = tmp_path / "native.dcm"
    before.write_bytes(native_output(result))
    recoded = reencode(result, "jpeg-ls")
    assert recoded is not None
    out = tmp_path / "out.dcm"
    out.write_bytes(recoded.data)
    assert dciodvfy_errors(out) - dciodvfy_errors(before) == set()


def _deid(path: Path, plan) -> object:
    return deidentify_file(path, plan, pz_for(plan), record=False, pixels_in_place=True)


@pytest.mark.parametrize("name", ["693_J2KR.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_RLE.dcm",
                                  "MR2_J2KI.dcm", "RG1_J2KI.dcm", "emri_small_big_endian.dcm"])
def test_compressed_lossy_and_big_endian_inputs_go_as_they_came(name: str) -> None:
    plan = plan_for("basic")
    result = _deid(data_file(name), plan)
    assert reencode(result, "jpeg-ls") is None  # lossless left, lossy never re-encoded, big endian left


def test_bits_above_bits_stored_or_odd_layouts_are_left_native(tmp_path: Path, plan) -> None:
    src, _ = synthetic(tmp_path / "a.dcm", "CTImageStorage", (16, 12, False, 1, 1, 0))
    ds = pydicom.dcmread(src)
    raw = bytearray(ds.PixelData)
    raw[1] |= 0x80  # an old overlay bit above Bits Stored: JPEG-LS would drop it
    ds.PixelData = bytes(raw)
    ds.save_as(src)
    assert reencode(_deid(src, plan), "jpeg-ls") is None
    for allocated, stored in ((32, 32), (8, 1), (8, 7), (16, 8)):  # the last two: depths dcmtk cannot decode
        ds = minimal_ct(rows=4, cols=8)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
        ds.PixelData = bytes(4 * 8 * allocated // 8)
        path = write_file(tmp_path / f"b{allocated}.dcm", ds)
        assert reencode(_deid(path, plan), "jpeg-ls") is None
    assert reencode(_deid(data_file("693_UNCR.dcm"), plan), "none") is None


REAL = ["693_UNCR.dcm", "693_UNCI.dcm", "eCT_Supplemental.dcm", "MR2_UNCR.dcm", "emri_small.dcm", "RG3_UNCR.dcm",
        "CT_small.dcm", "MR_small_implicit.dcm"]


@pytest.mark.parametrize("name", REAL)
def test_real_images_bit_exact_and_no_new_dciodvfy_error(tmp_path: Path, name: str) -> None:
    """Real CT, MR and CR test images: the re-encoded output decodes to the source's pixel values
    and dciodvfy finds no error in it that the native de-identified output does not have."""
    plan = plan_for("basic")
    src = data_file(name)
    native, recoded = _deid(src, plan), reencode(_deid(src, plan), "jpeg-ls")
    assert recoded is not None
    out = tmp_path / "out.dcm"
    out.write_bytes(recoded.data)
    before = tmp_path / "native.dcm"
    before.write_bytes(native_output(native))
    assert np.array_equal(pixel_array(str(out), raw=True), pixel_array(str(src), raw=True))
    assert dciodvfy_errors(out) - dciodvfy_errors(before) == set()
