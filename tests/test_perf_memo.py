"""The engine's per-patient memo of element outcomes is only a shortcut: with it or without it,
every slice of a series comes out byte for byte the same (plain values and whole sequences,
both little-endian syntaxes, dates shifted or not)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sfr_gateway import sample
from sfr_gateway.deid import engine
from sfr_gateway.deid.files import deidentify_file
from sfr_gateway.deid.profile import compile_plan, load_profile
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys
from sfr_gateway.errors import DicomError


def _outputs(paths: list[Path], plan_options: tuple[str, ...]) -> list[bytes]:
    plan = compile_plan(load_profile("sfr-covid", options=plan_options))
    pz = Pseudonymizer(PseudonymKeys(b"\x09" * 32, "T01"), offset_range=plan.offset_range)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths * 2:  # twice: hits
            try:
                out.append(deidentify_file(path, plan, pz, record=False).data or b"")
            except DicomError as exc:  # head CT, MR, dose reports... of the sample export
                out.append(exc.reason.encode())
    return out


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("options", [(), ("retain-long-modified-dates", "clean-descriptors")])
def test_memo_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implicit: bool,
                              options: tuple[str, ...]) -> None:
    export = sample.generate_export(tmp_path / "export", patients=2, seed=13, rows=8, cols=8, slices=4)
    for path in export.files:  # the same nested sequences in every slice, with UIDs, dates and names
        ds = pydicom.dcmread(path)
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
        ref = Dataset()
        ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.AnatomicRegionSequence = Sequence([code])
        ds.ReferencedImageSequence = Sequence([ref])
        visit = Dataset()
        visit.ScheduledProcedureStepStartDate = "20200316"
        visit.RequestedProcedureDescription = f"chest for {ds.PatientName}"
        ds.RequestAttributesSequence = Sequence([visit, visit])
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    engine._MEMOS.clear()
    with_memo = _outputs(export.files, options)
    assert any(engine._MEMOS.values())  # the memo was used
    monkeypatch.setattr(engine, "_memo_for", lambda ctx: None)
    without = _outputs(export.files, options)
    assert with_memo == without
    assert sum(len(o) > 1000 for o in with_memo) >= len(with_memo) // 2  # mostly released files


def test_values_unique_to_each_slice_stop_being_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long series: the memo keeps what slices share and drops, after its probation, a tag that
    misses on every file (SOP Instance UID, position...), so it does not grow with the series;
    outputs stay the same as without a memo."""
    export = sample.generate_export(tmp_path / "export", patients=1, seed=5, rows=8, cols=8, slices=60, extras=False)
    engine._MEMOS.clear()
    with_memo = _outputs(export.files, ())
    memos = list(engine._MEMOS.values())
    assert memos
    sop_uid = int(pydicom.tag.Tag("SOPInstanceUID"))
    for memo in memos:
        assert sop_uid in memo.skip
        assert not any(key[0] == sop_uid for key in memo)
        assert len(memo) < 200  # shared values only (was one entry per slice and unique tag)
    assert all(int(pydicom.tag.Tag("StudyDate")) not in memo.skip for memo in memos)  # shared: kept
    monkeypatch.setattr(engine, "_memo_for", lambda ctx: None)
    assert _outputs(export.files, ()) == with_memo


def test_memo_total_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engine, "_MEMO_MAX", 50)
    export = sample.generate_export(tmp_path / "export", patients=3, seed=6, rows=8, cols=8, slices=6, extras=False)
    engine._MEMOS.clear()
    _outputs(export.files, ())
    # a new memo is only added when all of them together hold at most the bound
    assert sum(map(len, engine._MEMOS.values())) <= 50 + max(map(len, engine._MEMOS.values()))
