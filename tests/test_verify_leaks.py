"""verify catches PHI planted in otherwise clean de-identified output, and passes clean output."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from verify_fixtures import CleanSet, clean_set, planted  # noqa: F401  (fixtures)

from sfr_gateway.verify import Finding, verify_outputs


def _run(s: CleanSet) -> list[Finding]:
    return verify_outputs(s.out, [s.src]).findings


def _errors(s: CleanSet) -> list[Finding]:
    return [f for f in _run(s) if f.severity == "error"]


def test_clean_hand_made_output_passes(clean_set: CleanSet) -> None:  # noqa: F811
    report = verify_outputs(clean_set.out, [clean_set.src])
    assert report.clean, [f.to_dict() for f in report.errors]
    assert report.dicom_outputs == len(clean_set.files) > 40
    assert report.paired == report.dicom_outputs
    assert report.tokens["patient-name-part"] == 9
    assert report.tokens["sop-instance-uid"] >= len(clean_set.files)


def test_name_in_nested_sequence_item(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)

    def plant(ds: Dataset) -> None:
        code = Dataset()
        code.CodeValue = "X1"
        code.CodingSchemeDesignator = "99TEST"
        code.CodeMeaning = "TDM de contrôle Lefèvre"
        request = Dataset()
        request.ScheduledProtocolCodeSequence = Sequence([code])
        ds.RequestAttributesSequence = Sequence([request])

    planted.edit(target, plant)
    errors = _errors(planted)
    rel = target.relative_to(planted.out).as_posix()
    assert [(f.file, f.path, f.keyword, f.kind) for f in errors] == [
        (rel, "(0040,0275)[0].(0040,0008)[0].(0008,0104)", "CodeMeaning", "patient-name-part")
    ]


def test_id_in_private_element(planted: CleanSet) -> None:  # noqa: F811
    patient = planted.export.patients[1]
    target = planted.files[-1]
    planted.edit(target, lambda ds: ds.private_block(0x0011, "ACME 1.0", create=True).add_new(
        0x01, "LO", f"IPP {patient.patient_id}"))
    errors = _errors(planted)
    assert [(f.path, f.keyword, f.kind, f.where) for f in errors] == [
        ("(0011,1001)", "[ACME 1.0]01", "patient-id", "text")
    ]


@pytest.mark.parametrize("text", ["CT thorax HELENE LEFEVRE", "ct thorax hélène lefèvre", "CT-THORAX_LEFEVRE"])
def test_accented_name_in_free_text_descriptor(planted: CleanSet, text: str) -> None:  # noqa: F811
    # Source name is LEFÈVRE^Hélène^Marie (ISO_IR 192); the descriptor drops or changes accents and case.
    assert planted.export.patients[0].name == "LEFÈVRE^Hélène^Marie"
    target = planted.image_of(0)
    planted.edit(target, lambda ds: setattr(ds, "StudyDescription", text))
    errors = _errors(planted)
    assert {(f.keyword, f.kind) for f in errors} == {("StudyDescription", "patient-name-part")}
    expected = {"HELENE", "LEFEVRE"} & set(text.upper().replace("É", "E").replace("È", "E").split())
    assert {f.token for f in errors} == (expected or {"LEFEVRE"})


def test_latin1_text_under_iso_ir_100(planted: CleanSet) -> None:  # noqa: F811
    # Patient 1 (MÜLLER^Jérôme) lives in ISO_IR 100 files: the text is Latin-1 bytes on disk.
    target = planted.image_of(1)
    planted.edit(target, lambda ds: (setattr(ds, "SpecificCharacterSet", "ISO_IR 100"),
                                     setattr(ds, "SeriesDescription", "Contrôle Jérôme")))
    assert "Jérôme".encode("latin-1") in target.read_bytes()
    errors = _errors(planted)
    assert [(f.keyword, f.kind, f.token) for f in errors] == [("SeriesDescription", "patient-name-part", "JEROME")]


def test_charset_overridden_in_sequence_item(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)

    def plant(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 192"
        item = Dataset()
        item.SpecificCharacterSet = "ISO_IR 100"
        item.CodeMeaning = "Hélène"
        ds.AnatomicRegionSequence = Sequence([item])

    planted.edit(target, plant)
    assert "Hélène".encode("latin-1") in target.read_bytes()
    errors = _errors(planted)
    assert [(f.path, f.kind, f.token) for f in errors] == [("(0008,2218)[0].(0008,0104)", "patient-name-part", "HELENE")]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8", "utf-16-le"])
def test_name_in_binary_value(planted: CleanSet, encoding: str) -> None:  # noqa: F811
    target = planted.files[3]
    blob = b"\x00\x07\xff" + "Lefèvre^Hélène".encode(encoding) + b"\x00\x81"
    planted.edit(target, lambda ds: ds.private_block(0x0013, "ACME BLOB", create=True).add_new(0x02, "OB", blob))
    errors = _errors(planted)
    assert {(f.path, f.vr, f.where, f.kind) for f in errors} == {("(0013,1002)", "OB", "binary", "patient-name-part")}
    assert {f.token for f in errors} == {"LEFEVRE", "HELENE"}


def test_birth_date_rendering_in_un_element(planted: CleanSet) -> None:  # noqa: F811
    birth = planted.export.patients[2].birth_date  # YYYYMMDD
    rendered = f"{birth[6:8]}/{birth[4:6]}/{birth[:4]}".encode()
    target = planted.files[5]
    planted.edit(target, lambda ds: ds.add_new(0x00171001, "UN", b"born " + rendered))
    errors = _errors(planted)
    assert [(f.path, f.kind, f.where) for f in errors] == [("(0017,1001)", "birth-date", "binary")]


def test_file_meta_is_searched(planted: CleanSet) -> None:  # noqa: F811
    target = planted.files[0]
    planted.edit(target, lambda ds: setattr(ds.file_meta, "SourceApplicationEntityTitle", "NGUYEN"))
    errors = _errors(planted)
    assert [(f.path, f.keyword, f.where, f.kind) for f in errors] == [
        ("(0002,0016)", "SourceApplicationEntityTitle", "file-meta", "patient-name-part")
    ]


def test_unremapped_reference_uid(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)
    src_loc = next(p for p in planted.export.files if p.name == "loc_0000.dcm")
    original = str(pydicom.dcmread(src_loc, stop_before_pixels=True).SOPInstanceUID)

    def plant(ds: Dataset) -> None:
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = original

    planted.edit(target, plant)
    report = verify_outputs(planted.out, [planted.src])
    found = {(f.severity, f.check, f.path, f.kind) for f in report.findings}
    assert ("error", "phi-token", "(0008,1140)[0].(0008,1155)", "sop-instance-uid") in found
    assert ("warning", "dangling-reference", "(0008,1140)[0].(0008,1155)", "unresolved") in found
    assert not report.clean


def test_original_uid_as_prefix_of_new_one(planted: CleanSet) -> None:  # noqa: F811
    target = planted.files[2]
    original_study = planted.export.patients[0].study_uids[0]
    planted.edit(target, lambda ds: ds.add_new(0x00191010, "LO", f"{original_study}.77"))
    assert {(f.path, f.kind) for f in _errors(planted)} == {("(0019,1010)", "study-uid")}


def test_inconsistent_uid_remapping(planted: CleanSet) -> None:  # noqa: F811
    target = planted.files[1]
    planted.edit(target, lambda ds: setattr(ds, "StudyInstanceUID", "2.25.12345678901234567890"))
    checks = {(f.check, f.kind) for f in _errors(planted)}
    assert ("uid-mapping", "one-original-many-new") in checks
    assert ("study-folder", "inconsistent-in-folder") in checks


@pytest.mark.parametrize("value", [None, "NO"])
def test_patient_identity_removed_must_be_yes(planted: CleanSet, value: str | None) -> None:  # noqa: F811
    target = planted.files[4]

    def plant(ds: Dataset) -> None:
        if value is None:
            del ds.PatientIdentityRemoved
        else:
            ds.PatientIdentityRemoved = value

    planted.edit(target, plant)
    errors = _errors(planted)
    assert [(f.check, f.path, f.kind) for f in errors] == [
        ("identity-removed", "(0012,0062)", "missing" if value is None else "not-yes")
    ]


def test_original_date_in_comment(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)
    date = planted.export.patients[0].study_dates[0]
    planted.edit(target, lambda ds: setattr(ds, "ImageComments", f"vu le {date[:4]}-{date[4:6]}-{date[6:]}"))
    assert {(f.keyword, f.kind) for f in _errors(planted)} == {("ImageComments", "original-date")}


def test_non_dicom_file_in_output_is_searched(planted: CleanSet) -> None:  # noqa: F811
    (planted.out / "notes.txt").write_text(f"patient {planted.export.patients[1].patient_id}\n", "utf-8")
    report = verify_outputs(planted.out, [planted.src])
    assert {(f.severity, f.check, f.file, f.path, f.kind) for f in report.findings} == {
        ("warning", "unreadable-output", "notes.txt", "<raw>", "not-dicom"),
        ("error", "phi-token", "notes.txt", "<raw>", "patient-id"),
    }


def test_json_never_shows_tokens_unless_revealed(planted: CleanSet) -> None:  # noqa: F811
    patient = planted.export.patients[0]
    planted.edit(planted.files[0], lambda ds: setattr(ds, "StudyDescription", f"{patient.patient_id} Lefèvre"))
    report = verify_outputs(planted.out, [planted.src])
    hidden = json.dumps(report.to_dict())
    shown = json.dumps(report.to_dict(reveal=True))
    for secret in (patient.patient_id, "LEFEVRE", "Lef"):
        assert secret not in hidden
    assert patient.patient_id in shown and "LEFEVRE" in shown


def test_worker_processes_give_the_same_report(planted: CleanSet, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from sfr_gateway.verify import pool

    planted.edit(planted.image_of(1), lambda ds: setattr(ds, "SeriesDescription", "MULLER"))
    planted.edit(planted.files[0], lambda ds: ds.add_new(0x00191001, "OB", b"\x01" + b"19640724"))
    monkeypatch.setattr(pool, "CHUNK", 7)
    monkeypatch.setattr(pool, "MIN_FILES_FOR_POOL", 1)
    single = verify_outputs(planted.out, [planted.src], workers=1)
    multi = verify_outputs(planted.out, [planted.src], workers=2)
    assert [f.to_dict(reveal=True) for f in multi.findings] == [f.to_dict(reveal=True) for f in single.findings]
    assert {(f.kind, f.token) for f in single.errors} == {("patient-name-part", "MULLER"), ("birth-date", "19640724")}
    assert multi.tokens == single.tokens and multi.paired == single.paired


def test_truncated_output_is_an_error_and_still_searched(planted: CleanSet) -> None:  # noqa: F811
    target = planted.files[0]
    planted.edit(target, lambda ds: ds.add_new(0x00291001, "LO", "NGUYEN"))
    data = target.read_bytes()
    cut = data.index(b"NGUYEN") + 6
    target.write_bytes(data[:cut] + b"\x10\x00\x10\x00PN\xff\x00ab")  # a header promising 255 bytes
    report = verify_outputs(planted.out, [planted.src])
    rel = target.relative_to(planted.out).as_posix()
    got = {(f.severity, f.check, f.kind) for f in report.findings if f.file == rel}
    assert ("error", "unreadable-output", "truncated-value") in got
    assert ("error", "phi-token", "patient-name-part") in got


def test_dangling_reference_to_a_source_instance_left_out_is_information_only(planted: CleanSet) -> None:  # noqa: F811
    """A reference to an instance of the sources that is not in the output (the selection excluded
    the localizer) never fails the run and is information, not a warning (issue 17)."""
    target = planted.image_of(0)
    ref = pydicom.dcmread(target).ReferencedImageSequence[0].ReferencedSOPInstanceUID
    localizer = next(p for p in planted.files if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == ref)
    localizer.unlink()
    report = verify_outputs(planted.out, [planted.src])
    assert report.clean
    dangling = {f.file for f in report.findings if f.check == "dangling-reference"}
    assert target.relative_to(planted.out).as_posix() in dangling
    assert all(f.severity == "info" and f.kind == "source-not-released" for f in report.findings)
    assert report.warnings == []


def test_two_originals_mapped_to_one_new_uid(planted: CleanSet) -> None:  # noqa: F811
    series: dict[str, Path] = {}
    for path in planted.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series.setdefault(str(ds.SeriesInstanceUID), path)
    first, second = list(series.values())[:2]
    other = str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)
    planted.edit(second, lambda ds: setattr(ds, "SeriesInstanceUID", other))
    found = {(f.check, f.keyword, f.kind) for f in _errors(planted)}
    assert ("uid-mapping", "SeriesInstanceUID", "many-originals-one-new") in found


def test_progress_is_reported_per_phase(clean_set: CleanSet) -> None:  # noqa: F811
    calls: list[tuple[str, int, int]] = []
    verify_outputs(clean_set.out, [clean_set.src], workers=1, progress=lambda *a: calls.append(a))
    assert calls[0][0] == "sources" and calls[-1] == ("outputs", len(clean_set.files), len(clean_set.files))
    assert ("sources", len(clean_set.export.files), len(clean_set.export.files)) in calls


def test_pixel_data_searched_only_when_asked(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(2)

    def plant(ds: Dataset) -> None:
        pixels = bytearray(ds.PixelData)
        pixels[100:106] = b"NGUYEN"
        ds.PixelData = bytes(pixels)

    planted.edit(target, plant)
    assert verify_outputs(planted.out, [planted.src]).clean
    report = verify_outputs(planted.out, [planted.src], include_pixel_data=True)
    assert report.pixel_data_searched
    assert {(f.path, f.where, f.kind) for f in report.errors} == {("(7FE0,0010)", "binary", "patient-name-part")}


def test_dangling_uid_shown_only_when_revealed(planted: CleanSet) -> None:  # noqa: F811
    target = planted.image_of(0)
    planted.edit(target, lambda ds: setattr(ds.ReferencedImageSequence[0], "ReferencedSOPInstanceUID", "2.25.424242"))
    report = verify_outputs(planted.out, [planted.src])
    dangling = [f for f in report.findings if f.check == "dangling-reference"]
    assert len(dangling) == 1
    # the localizer's original UID now maps to two new ones: this file's and the localizer's own
    assert {(f.check, f.kind) for f in report.errors} == {("uid-mapping", "one-original-many-new")}
    assert "2.25.424242" not in json.dumps(report.to_dict())
    assert "2.25.424242" in json.dumps(report.to_dict(reveal=True))


def test_dropped_sequence_item_does_not_confuse_the_mapping(clean_set: CleanSet, tmp_path: Path) -> None:  # noqa: F811
    # An engine that removes the first of two referenced images shifts the item indexes: the
    # mapping must not pair the source's item 0 with the output's (former item 1).
    import shutil

    from verify_fixtures import hand_deidentify, new_uid

    src = tmp_path / "src"
    shutil.copytree(clean_set.src, src)
    image = next(p for p in sorted(src.rglob("ser02_0001.dcm")))
    other = pydicom.dcmread(image.with_name("ser03_0000.dcm"), stop_before_pixels=True)
    ds = pydicom.dcmread(image)
    second = Dataset()
    second.ReferencedSOPClassUID = other.SOPClassUID
    second.ReferencedSOPInstanceUID = other.SOPInstanceUID
    ds.ReferencedImageSequence.append(second)
    ds.save_as(image, enforce_file_format=True)
    out = tmp_path / "out"
    written = hand_deidentify(src, out)
    assert verify_outputs(out, [src]).clean
    target = next(p for p in written if pydicom.dcmread(p).SOPInstanceUID == new_uid(str(ds.SOPInstanceUID)))
    kept = pydicom.dcmread(target)
    kept.ReferencedImageSequence = Sequence([kept.ReferencedImageSequence[1]])
    kept.save_as(target, enforce_file_format=True)
    report = verify_outputs(out, [src])
    assert report.clean, [f.to_dict() for f in report.errors]
