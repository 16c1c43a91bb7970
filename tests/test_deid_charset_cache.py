"""A name that does not decode with the declared character set is refused every time, not only
the first time its raw bytes are seen (the token cache once skipped the check: a leak)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sfr_gateway.deid import PseudonymKeys, compile_plan, deidentify_file, load_profile
from sfr_gateway.errors import DicomError
from sfr_gateway.sample import StudySpec, ct_slice, make_patients


def _mislabelled(path: Path, index: int) -> Path:
    patient = make_patients(1, seed=0)[0]  # LEFÈVRE^Hélène: non-ASCII name parts
    study = StudySpec("chest", dt.date(2020, 4, 1), "1.2.826.0.1.3680043.10.1374.77", "A1", "1")
    ds = ct_slice(patient, study, "1.2.826.0.1.3680043.10.1374.78", 2, index)
    ds.SpecificCharacterSet = "ISO_IR 192"  # says UTF-8 ...
    ds["PatientName"].value = patient.name.encode("latin-1")  # ... but the name is Latin-1
    ds.save_as(path, enforce_file_format=True)
    return path


def test_every_slice_with_an_undecodable_name_is_refused(tmp_path: Path) -> None:
    plan = compile_plan(load_profile("sfr-covid"))
    keys = PseudonymKeys(b"k" * 32, "TEST01")
    for i in range(3):  # the same raw name on every slice: later ones hit the token cache
        with pytest.raises(DicomError) as refused:
            deidentify_file(_mislabelled(tmp_path / f"{i}.dcm", i), plan, keys)
        assert refused.value.reason == "charset"
