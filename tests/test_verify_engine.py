"""verify against the real engine: its clean output passes; what an option keeps on purpose is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from verify_fixtures import CleanSet, clean_set  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from sfr_gateway.cli import main

    home = tmp_path_factory.mktemp("verify-engine") / "home"
    with CliRunner().isolation():
        assert main(["--home", str(home), "init", "--site-id", "TEST01"]) == 0
    return home


def _deidentify(cli, home: Path, src: Path, out: Path, *options: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, "deidentify", src, "--output", out, *options)
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["sfr-covid", "basic"])
def test_engine_output_is_clean(cli, engine_home: Path, clean_set: CleanSet, tmp_path: Path,  # noqa: F811
                                profile: str) -> None:
    out = tmp_path / "out"
    _deidentify(cli, engine_home, clean_set.src, out, "--profile", profile)
    result = cli("verify", out, "--against", clean_set.src, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0, [f for f in data["findings"] if f["severity"] == "error"]
    assert data["counts"]["dicom_outputs"] > 40
    assert data["counts"]["paired_outputs"] == data["counts"]["dicom_outputs"]  # pixels kept byte for byte


def test_engine_output_with_planted_leak_fails(cli, engine_home: Path, clean_set: CleanSet,  # noqa: F811
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    _deidentify(cli, engine_home, clean_set.src, out)
    target = min(out.rglob("*.dcm"))
    ds = pydicom.dcmread(target)
    ds.SeriesDescription = "THORAX hélène"
    ds.save_as(target)
    result = cli("verify", out, "--against", clean_set.src, "--json")
    assert result.exit_code == 13
    assert {(f["keyword"], f["kind"]) for f in json.loads(result.stdout)["findings"]} == {
        ("SeriesDescription", "patient-name-part")
    }


def test_retained_uids_and_institution_are_reported(cli, engine_home: Path, clean_set: CleanSet,  # noqa: F811
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    _deidentify(cli, engine_home, clean_set.src, out, "--option", "retain-uids",
                "--option", "retain-institution-identity")
    result = cli("verify", out, "--against", clean_set.src, "--json")
    assert result.exit_code == 13
    kinds = {f["kind"] for f in json.loads(result.stdout)["findings"]}
    assert {"study-uid", "series-uid", "sop-instance-uid", "institution-name"} <= kinds
    assert not kinds & {"patient-name-part", "patient-id", "birth-date", "original-date", "accession-number"}


def test_engine_output_of_pydicom_files_is_clean(cli, engine_home: Path, tmp_path: Path) -> None:
    import shutil

    import pydicom.data

    bundled = Path(pydicom.data.__file__).parent  # the files shipped in the wheel (no download)
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted([*bundled.glob("test_files/*"), *bundled.glob("charset_files/*")]):
        if path.is_file() and path.suffix != ".py":
            shutil.copy(path, src / path.name)
    out = tmp_path / "out"
    _deidentify(cli, engine_home, src, out, "--profile", "basic")
    result = cli("verify", out, "--against", src, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0, data["findings"]
    assert data["counts"]["dicom_outputs"] >= 5
