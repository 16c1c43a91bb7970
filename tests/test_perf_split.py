"""Pixels in place: a header-only read (lean reader or pydicom) + the source's pixel bytes gives
exactly the file the whole-file path writes, refuses exactly what it refuses, and notices a
source that changes between its header and its pixel bytes."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sfr_gateway import sample
from sfr_gateway.deid import rawread
from sfr_gateway.deid.files import DeidResult, copy_pixels, deidentify_file, read_head
from sfr_gateway.deid.profile import compile_plan, load_profile
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys
from sfr_gateway.errors import DicomError

PLANS = {name: compile_plan(load_profile(name, options=opts))
         for name, opts in (("sfr-covid", ()), ("basic", ("retain-long-modified-dates", "clean-descriptors")))}


def _pz(plan_name: str) -> Pseudonymizer:
    return Pseudonymizer(PseudonymKeys(b"\x05" * 32, "T01"), offset_range=PLANS[plan_name].offset_range)


def _output(result: DeidResult) -> bytes:
    if result.pixels is None:
        assert result.data is not None
        return result.data
    assert result.head is not None
    with open(result.pixels.path, "rb") as fh:
        fh.seek(result.pixels.offset)
        return result.head + fh.read(result.pixels.length)


def _same_outcome(path: Path, plan_name: str) -> bool:
    """Both paths refuse with the same reason or write the same bytes; True if the split path was taken."""
    plan, pz = PLANS[plan_name], _pz(plan_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            whole = deidentify_file(path, plan, pz, record=False)
        except DicomError as exc:
            with pytest.raises(DicomError) as split_exc:
                deidentify_file(path, plan, pz, record=False, pixels_in_place=True)
            assert split_exc.value.reason == exc.reason, path.name
            return False
        split = deidentify_file(path, plan, pz, record=False, pixels_in_place=True)
    assert _output(split) == whole.data, path.name
    assert split.output_size == len(whole.data or b"")
    return split.pixels is not None


@pytest.mark.parametrize("plan_name", sorted(PLANS))
def test_generated_exports_identical_and_mostly_split(tmp_path: Path, plan_name: str) -> None:
    export = sample.generate_export(tmp_path / "export", patients=3, seed=11, rows=24, cols=24, slices=3)
    taken = [_same_outcome(p, plan_name) for p in export.files]
    assert sum(taken) >= len(taken) * 3 // 4


@pytest.mark.parametrize("implicit", [True, False])
def test_both_little_endian_syntaxes_with_nested_undefined_length_sequences(tmp_path: Path, implicit: bool) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=3, rows=16, cols=16, slices=2, extras=False)
    for path in export.files:
        ds = pydicom.dcmread(path)
        inner = Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-D3000", "SRT", "Chest"
        item = Dataset()
        item.AnatomicRegionSequence = Sequence([inner])
        item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        item.ReferencedSOPClassUID = ds.SOPClassUID
        ds.SourceImageSequence = Sequence([item, item])  # undefined length, items of undefined length
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
        lean = rawread.read_lean(path)
        assert lean is not None  # the lean reader takes these files
        assert lean[0].original_encoding == (implicit, True)
        assert _same_outcome(path, "sfr-covid")


@pytest.mark.parametrize("plan_name", sorted(PLANS))
def test_pydicom_test_files_same_bytes_or_same_refusal(plan_name: str) -> None:
    paths = sorted({Path(p) for p in get_testdata_files("*") if Path(p).is_file()})
    assert len(paths) > 50
    for path in paths:  # most are refused (not CT, compressed, odd); CT_small has padding after Pixel Data
        _same_outcome(path, plan_name)


def test_lean_reader_matches_pydicom_element_for_element(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=2, seed=4, rows=16, cols=16, slices=2)
    compared = 0
    for path in export.files:
        lean = rawread.read_lean(path)
        if lean is None:
            continue
        ds = lean[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = pydicom.dcmread(path, stop_before_pixels=True)
        assert list(ds.keys()) == list(ref.keys()), path.name
        for elem in ref:
            assert ds[elem.tag].value == elem.value, (path.name, elem.tag)
        assert ds.file_meta == ref.file_meta
        assert ds.original_character_set == ref.original_character_set
        compared += 1
    assert compared >= len(export.files) // 2


def test_lean_reader_declines_what_it_does_not_handle(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=6, rows=8, cols=8, slices=1, extras=False)
    path = export.files[0]
    data = path.read_bytes()
    cases = {
        "no-preamble": data[132:],
        "truncated-header": data[:400],
        "big-endian": data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00", 1),
    }
    for name, blob in cases.items():
        target = tmp_path / name
        target.write_bytes(blob)
        assert rawread.read_lean(target) is None, name


def test_a_source_changed_after_its_header_is_refused(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=7, rows=16, cols=16, slices=1, extras=False)
    path = export.files[0]
    result = deidentify_file(path, PLANS["sfr-covid"], _pz("sfr-covid"), record=False, pixels_in_place=True)
    assert result.pixels is not None
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # rewritten by the PACS meanwhile
    with open(tmp_path / "out.dcm", "wb") as out, pytest.raises(DicomError) as exc:
        copy_pixels(result.pixels, out)
    assert exc.value.reason == "changed-while-read"


def test_copy_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=8, rows=64, cols=64, slices=1, extras=False)
    path = export.files[0]
    result = deidentify_file(path, PLANS["sfr-covid"], _pz("sfr-covid"), record=False, pixels_in_place=True)
    assert result.pixels is not None and result.head is not None

    def cross_device(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)  # e.g. the output on another filesystem
    with open(tmp_path / "out.dcm", "wb") as out:
        out.write(result.head)
        copy_pixels(result.pixels, out)
        assert out.tell() == result.output_size
    assert (tmp_path / "out.dcm").read_bytes() == _output(result)


def test_split_needs_pixel_data_last(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=9, rows=8, cols=8, slices=1, extras=False)
    path = export.files[0]
    ds = pydicom.dcmread(path)
    ds.add_new(0xFFFCFFFC, "OB", b"\0\0")  # Data Set Trailing Padding after Pixel Data
    ds.save_as(path, enforce_file_format=True)
    assert read_head(path) is None
    assert not _same_outcome(path, "sfr-covid")
