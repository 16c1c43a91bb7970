"""The fast serialiser writes exactly what pydicom's dcmwrite writes, on every file it handles."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sfr_gateway import sample
from sfr_gateway.deid.files import deidentify_file
from sfr_gateway.deid.profile import compile_plan, load_profile
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys
from sfr_gateway.deid.rawwrite import can_write_fast, write_fast
from sfr_gateway.errors import DicomError

PLAN = compile_plan(load_profile("sfr-covid"))
PZ = Pseudonymizer(PseudonymKeys(b"\x07" * 32, "T01"), offset_range=PLAN.offset_range)


def _reference(ds: pydicom.Dataset) -> bytes:
    ts = str(ds.file_meta.TransferSyntaxUID)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True, implicit_vr=ts == "1.2.840.10008.1.2",
                         little_endian=ts != "1.2.840.10008.1.2.2")
    return buf.getvalue()


def _compare(paths: list[Path]) -> int:
    fast = 0
    for path in paths:
        try:
            result = deidentify_file(path, PLAN, PZ, write=False, record=False)
        except DicomError:
            continue
        ds = result.dataset
        if not can_write_fast(ds):
            continue
        out = io.BytesIO()
        write_fast(ds, out)
        assert out.getvalue() == _reference(ds), path.name
        fast += 1
    return fast


def test_identical_to_dcmwrite_on_generated_exports(tmp_path: Path) -> None:
    export = sample.generate_export(tmp_path / "export", patients=3, seed=5, rows=32, cols=32, slices=3)
    assert _compare(export.files) >= len(export.files) // 2  # most files take the fast path


@pytest.mark.parametrize("implicit", [True, False])
def test_identical_with_both_little_endian_syntaxes(tmp_path: Path, implicit: bool) -> None:
    export = sample.generate_export(tmp_path / "export", patients=1, seed=2, rows=16, cols=16, slices=2, extras=False)
    for path in export.files:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    assert _compare(export.files) == len(export.files)


def test_identical_on_pydicom_test_files_it_takes() -> None:
    paths = sorted({Path(p) for p in get_testdata_files("*") if Path(p).is_file()})
    assert _compare(paths) >= 1
