"""The batch runner as a library: in-process path, quarantine records and copies, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfr_gateway.deid.folder import RunSpec, iter_inputs, quarantine_id, run
from sfr_gateway.errors import InputError, ProfileError
from tests.deid_fixtures import SECRET_A, minimal_ct, write_file


def _spec(tmp_path: Path, **kwargs: object) -> RunSpec:
    base: dict[str, object] = {
        "profile": "sfr-covid", "options": (), "site_overrides": (), "site_private_keep": (),
        "output": tmp_path / "out", "quarantine": tmp_path / "quarantine", "keep_copies": False,
        "secret": SECRET_A, "site_id": "TEST01",
    }
    base.update(kwargs)
    return RunSpec(**base)  # type: ignore[arg-type]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    src = tmp_path / "src dir é"
    for i in range(3):
        write_file(src / f"img{i}.dcm", minimal_ct(sop_uid=f"1.2.826.0.1.3680043.10.1374.9.{i}"))
    burned = minimal_ct(sop_uid="1.2.826.0.1.3680043.10.1374.9.99")
    burned.BurnedInAnnotation = "YES"
    write_file(src / "burned.dcm", burned)
    (src / "notes.txt").write_text("not dicom")
    return src


def test_run_in_process_with_quarantine_copies(tmp_path: Path, inputs: Path) -> None:
    spec = _spec(tmp_path, keep_copies=True)
    summary = run([inputs], spec, workers=1)
    data = summary.as_dict()
    assert (data["seen"], data["released"], data["quarantined"]) == (5, 3, 2)
    assert data["patients"] == 1 and data["studies"] == 1 and data["series"] == 1
    assert data["quarantined_by_reason"] == {"burned-in-suspected": 1, "not-dicom": 1}
    qid = quarantine_id(inputs / "burned.dcm")
    record = json.loads((tmp_path / "quarantine" / f"{qid}.json").read_text())
    assert record["reason"] == "burned-in-suspected" and record["copy"] == f"{qid}.dcm"
    assert (tmp_path / "quarantine" / f"{qid}.dcm").read_bytes() == (inputs / "burned.dcm").read_bytes()
    assert oct((tmp_path / "quarantine" / f"{qid}.json").stat().st_mode & 0o777) == "0o600"
    first = {p.relative_to(spec.output): p.read_bytes() for p in spec.output.rglob("*.dcm")}
    again = run([inputs], spec, workers=2)  # same key, same inputs: same files, same bytes
    assert again.released == 3
    assert {p.relative_to(spec.output): p.read_bytes() for p in spec.output.rglob("*.dcm")} == first
    assert not list(spec.output.rglob("*.tmp"))


def test_output_inside_sources_is_not_reprocessed(tmp_path: Path, inputs: Path) -> None:
    spec = _spec(tmp_path, output=inputs / "out")
    assert run([inputs], spec).released == 3
    outputs = sorted(spec.output.rglob("*.dcm"))
    assert len(outputs) == 3
    (inputs / "link-to-an-output.dcm").symlink_to(outputs[0])  # the same file under a source's name
    (inputs / "linked-folder").symlink_to(spec.output, target_is_directory=True)  # not followed
    again = run([inputs], spec)
    assert (again.seen, again.released) == (5, 3)  # img0-2, burned, notes: no output read back


def test_inputs_are_walked_in_name_order_without_following_folder_links(tmp_path: Path) -> None:
    root = tmp_path / "export"
    for rel in ("b/2.dcm", "b/1.dcm", "a/z/9.dcm", "a/0.dcm", "top.dcm"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "a" / "link.dcm").symlink_to(root / "top.dcm")
    (root / "a" / "dangling.dcm").symlink_to(root / "nowhere")
    (root / "c").symlink_to(root / "b", target_is_directory=True)
    assert [p.relative_to(root).as_posix() for p in iter_inputs([root, root / "top.dcm"])] == [
        "top.dcm", "a/0.dcm", "a/link.dcm", "a/z/9.dcm", "b/1.dcm", "b/2.dcm", "top.dcm"]


def test_bad_profile_fails_before_any_file_and_missing_source(tmp_path: Path, inputs: Path) -> None:
    with pytest.raises(ProfileError):
        run([inputs], _spec(tmp_path, options=("retain-nothing",)))
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError):
        list(iter_inputs([tmp_path / "missing"]))
