"""Inputs sharing a SOP Instance UID (issue 15): an output is never overwritten; copies of one
instance are released once and counted as duplicates; conflicting ones are quarantined naming
the other path; the summary counts exactly what was written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sfr_gateway.deid.folder import RunSpec, quarantine_id, run
from sfr_gateway.deid.sameness import compare_files
from tests.deid_fixtures import SECRET_A, minimal_ct, write_file
from tests.independent_data import data_file

MR_SMALL = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
            "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_padded.dcm"]
NATIVE_OR_RLE = {"MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm",
                 "MR_small_padded.dcm"}


def _spec(tmp_path: Path, profile: str = "basic", output: str = "out") -> RunSpec:
    return RunSpec(profile=profile, options=(), site_overrides=(), site_private_keep=(), output=tmp_path / output,
                   quarantine=tmp_path / "quarantine", keep_copies=False, secret=SECRET_A, site_id="TEST01")


def _copy(tmp_path: Path, names: list[str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        shutil.copyfile(data_file(name), src / name)
    return src


def _outputs(spec: RunSpec) -> list[Path]:
    return sorted(spec.output.rglob("*.dcm"))


@pytest.mark.parametrize("workers", [1, 2])
def test_transfer_syntax_variants_are_released_once(tmp_path: Path, workers: int) -> None:
    src = _copy(tmp_path, MR_SMALL)
    spec = _spec(tmp_path)
    fates: dict[str, tuple[str, dict[str, str]]] = {}
    summary = run([src], spec, workers=workers, on_file=lambda p, status, info: fates.update({p.name: (status, info)}))
    assert len(_outputs(spec)) == 1 == summary.written == summary.released
    assert summary.seen == 8 == summary.released + summary.duplicates + sum(summary.quarantined.values())
    assert fates["MR_small.dcm"][0] == "released"  # the first in input order, whatever the workers
    for name in NATIVE_OR_RLE:  # decodable here: proven copies of one instance
        status, info = fates[name]
        assert status == "duplicate" and info["same_as"] == str(src / "MR_small.dcm"), name
    for name in set(MR_SMALL) - NATIVE_OR_RLE - {"MR_small.dcm"}:  # JPEG 2000 / JPEG-LS: copies if decodable
        status, info = fates[name]
        assert status == "duplicate" or info["other"] == str(src / "MR_small.dcm"), (name, info)
    data = summary.as_dict()
    assert data["duplicates"] == summary.duplicates >= 5
    assert {d["source"] for d in data["duplicate_of"]} >= {str(src / n) for n in NATIVE_OR_RLE}


def test_conflicting_instances_are_quarantined_naming_the_other_path(tmp_path: Path) -> None:
    src = _copy(tmp_path, ["693_J2KR.dcm", "693_UNCR.dcm"])
    spec = _spec(tmp_path)
    summary = run([src], spec)
    assert (summary.seen, summary.released, summary.written, summary.duplicates) == (2, 1, 1, 0)
    assert summary.quarantined == {"duplicate-sop-instance": 1}
    record = json.loads((spec.quarantine / f"{quarantine_id(src / '693_UNCR.dcm')}.json").read_text())
    assert record["other"] == str(src / "693_J2KR.dcm") and str(src / "693_J2KR.dcm") in record["detail"]
    assert "BitsStored" in record["detail"]  # the first difference, by keyword (never a value)
    before = _outputs(spec)[0].read_bytes()
    again = run([src], spec)  # a second run: the output is there, nothing is written or overwritten
    assert (again.released, again.written, again.duplicates) == (1, 0, 0)
    assert _outputs(spec)[0].read_bytes() == before


def test_a_different_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_file(src / "a.dcm", minimal_ct())
    spec = _spec(tmp_path, "sfr-covid")
    assert run([src], spec).written == 1
    [output] = _outputs(spec)
    before = output.read_bytes()
    other = _spec(tmp_path, "basic")  # another profile, same key and output folder: same output path
    summary = run([src], other)
    assert (summary.released, summary.written) == (0, 0)
    assert summary.quarantined == {"duplicate-sop-instance": 1}
    assert output.read_bytes() == before
    record = json.loads((spec.quarantine / f"{quarantine_id(src / 'a.dcm')}.json").read_text())
    assert record["other"] == str(output)
    assert not list(spec.output.rglob("*.tmp"))


def test_byte_identical_copies_count_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_file(src / "a.dcm", minimal_ct())
    shutil.copyfile(src / "a.dcm", src / "b copy.dcm")
    spec = _spec(tmp_path)
    summary = run([src], spec)
    assert (summary.seen, summary.released, summary.written, summary.duplicates) == (2, 1, 1, 1)
    assert summary.as_dict()["duplicate_of"] == [{"source": str(src / "b copy.dcm"), "released_as": str(src / "a.dcm")}]


def test_compare_files_for_scan_and_run(tmp_path: Path) -> None:
    same = compare_files(data_file("MR_small.dcm"), data_file("MR_small_bigendian.dcm"))
    assert same.same and same.verdict == "same-instance"
    assert compare_files(data_file("MR_small.dcm"), data_file("MR_small.dcm")).verdict == "identical"
    different = compare_files(data_file("693_UNCR.dcm"), data_file("693_J2KR.dcm"))
    assert not different.same and different.detail == "BitsStored"
    lossy = compare_files(data_file("693_UNCI.dcm"), data_file("693_J2KI.dcm"))
    assert not lossy.same
