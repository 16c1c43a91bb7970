"""Things that must never leave inside an output file: a name that does not decode with the declared
character set (refused on every file, not only on a token-cache miss) and the source preamble."""

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


def test_the_source_preamble_is_never_copied(tmp_path: Path) -> None:
    import pydicom

    src = _mislabelled(tmp_path / "src.dcm", 0)
    ds = pydicom.dcmread(src)
    ds.SpecificCharacterSet = "ISO_IR 100"  # now the name decodes: the file is released
    ds.preamble = b"II*\x00 LEFEVRE Helene, 12 rue de la Paix".ljust(128, b"\x00")
    ds.save_as(src, enforce_file_format=True)
    assert src.read_bytes()[:7] == b"II*\x00 LE"
    result = deidentify_file(src, compile_plan(load_profile("sfr-covid")), PseudonymKeys(b"k" * 32, "TEST01"))
    assert result.data is not None
    assert result.data[:132] == b"\x00" * 128 + b"DICM"
