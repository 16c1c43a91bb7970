"""verify's token rules: normalisation, what counts as a token, how it is found."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from sfr_gateway.verify import tokens as tk
from sfr_gateway.verify import verify_outputs
from sfr_gateway.verify.sources import collect_view
from sfr_gateway.verify.walk import iter_elements


def _hits(index: tk.TokenIndex, text: str, **kw: bool) -> set[tuple[str, str]]:
    return {(h.token, h.entry.kind) for h in index.find_in_text(text, **kw)}


def test_normalise_drops_accents_and_ligatures() -> None:
    assert tk.normalise("Lefèvre^Hélène Œuvre Maßen") == "LEFEVRE^HELENE OEUVRE MASSEN"
    assert tk.words("CT-thorax_HÉLÈNE/12.5") == ["CT", "THORAX", "HELENE", "12", "5"]


def test_person_name_parts_and_rules() -> None:
    index = tk.TokenIndex()
    tk.add_person_name(index, "DE LA TOUR^Jean-Pierre^Li^^Mme", "patient-name")
    assert set(index.phrases) == {"DE LA TOUR", "TOUR", "JEAN PIERRE", "JEAN", "PIERRE"}
    assert index.phrases["TOUR"].kinds == {"patient-name-part"}
    assert index.phrases["DE LA TOUR"].kinds == {"patient-name"}
    assert _hits(index, "scanner de m. de la tour") == {("DE LA TOUR", "patient-name"), ("TOUR", "patient-name-part")}
    assert _hits(index, "TOURNESOL") == set()  # whole words only


def test_identifiers_skip_short_and_small_numbers() -> None:
    index = tk.TokenIndex()
    for value in ("123", "AB", "1234", "IPP-77-X"):
        tk.add_identifier(index, value, "patient-id")
    assert set(index.phrases) == {"1234", "IPP 77 X", "IPP77X"}
    assert _hits(index, "ipp_77_x") == {("IPP 77 X", "patient-id")}
    assert _hits(index, "1234", numeric=True) == set()  # a number in IS/DS is a number
    assert _hits(index, "ref 1234") == {("1234", "patient-id")}


def test_dates_in_their_renderings() -> None:
    index = tk.TokenIndex()
    tk.add_date(index, "19640724", "birth-date", None)
    for text in ("19640724", "1964-07-24", "24/07/1964", "24.07.1964", "24071964", "19640724093000.0+0100"):
        assert _hits(index, text) == {(_key(text), "birth-date")}, text
    assert _hits(index, "1964-07-25") == set()


def _key(text: str) -> str:
    ws = tk.words(text)
    return " ".join(ws) if len(ws) == 3 and len(ws[0]) <= 4 else ws[0][:8]


def test_original_dates_are_scoped_to_their_study() -> None:
    index = tk.TokenIndex()
    tk.add_date(index, "20200315", "original-date", "1.2.3")
    entry = index.phrases["20200315"]
    assert entry.applies_to("1.2.3") and entry.applies_to(None) and not entry.applies_to("1.2.4")
    tk.add_date(index, "20200315", "birth-date", None)  # also someone's birth date: global
    assert entry.applies_to("1.2.4")


def test_uids_exact_or_as_prefix_and_well_known_skipped() -> None:
    index = tk.TokenIndex()
    index.add_uid("1.2.826.0.1.99.5", "study-uid")
    assert index.find_uid("1.2.826.0.1.99.5") is not None
    assert index.find_uid("1.2.826.0.1.99.5.1.2") is not None
    assert index.find_uid("1.2.826.0.1.99.51") is None
    assert _hits(index, "see 1.2.826.0.1.99.5.7 here") == {("1.2.826.0.1.99.5", "study-uid")}
    assert tk.is_well_known_uid("1.2.840.10008.5.1.4.1.1.2", "ReferencedSOPClassUID")
    assert tk.is_well_known_uid("1.2.826.0.1.3680043.8.498.1", "ImplementationClassUID")
    assert not tk.is_well_known_uid("1.2.826.0.1.99.5", "StudyInstanceUID")


def test_binary_substring_search() -> None:
    index = tk.TokenIndex()
    tk.add_person_name(index, "Lefèvre^Zoé", "patient-name")
    found = {h.token for h in index.find_in_binary("\x07LLef\xe8vre\x00ZOE")}
    assert found == {"LEFEVRE", "ZOE"}  # LEFEVRE glued to a length byte; ZOE (3) only as a word


def test_binary_search_of_a_postal_code_inside_a_longer_number() -> None:
    """Found by the demo: a batch manifest (searched as raw bytes) lists random 39-digit UIDs, and
    a 5-digit postal code turned up inside one about one run in three. Inside such a long number it
    is no hit; glued to letters, binary bytes or a stray digit, or alone, it still is."""
    index = tk.TokenIndex()
    tk.add_address(index, "12 rue des Lilas^^Lyon^^99978^FR", "patient-address", parts=True)
    assert not {h.token for h in index.find_in_binary('"2.25.254873426883725999785593885623842699552.dcm"')}
    assert {h.token for h in index.find_in_binary("\x05\x0099978\x00")} == {"99978"}
    assert {h.token for h in index.find_in_binary("CP99978X")} == {"99978"}
    assert {h.token for h in index.find_in_binary("code 99978 here")} == {"99978"}
    assert {h.token for h in index.find_in_binary("\x0199978\x300")} == {"99978"}  # a stray digit byte


def test_many_tokens_index_stays_exact() -> None:
    index = tk.TokenIndex()
    for i in range(20000):
        tk.add_identifier(index, f"ID{i:06d}", "patient-id")
    assert _hits(index, "x ID019999 y") == {("ID019999", "patient-id")}
    assert {h.token for h in index.find_in_binary("zzID000042zz")} == {"ID000042"}


def test_pn_with_ideographic_groups_from_pydicom_charset_file() -> None:
    path = next(Path(p) for p in get_charset_files("chrH32.dcm"))
    index = tk.TokenIndex()
    for view in iter_elements(pydicom.dcmread(path)):
        collect_view(index, view, None)
    kinds = {k for e in index.phrases.values() for k in e.kinds}
    assert "patient-name-part" in kinds
    assert tk.normalise(str(pydicom.dcmread(path).PatientName).split("^")[0]).split("=")[0] in index.phrases


@pytest.mark.parametrize("name", ["chrFren.dcm", "chrH31.dcm", "chrX1.dcm", "chrGerm.dcm"])
def test_pydicom_charset_files_copied_unchanged_leak(tmp_path: Path, name: str) -> None:
    src = Path(get_charset_files(name)[0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "copy.dcm").write_bytes(src.read_bytes())
    report = verify_outputs(out, [src])
    kinds = {f.kind for f in report.errors}
    assert "patient-name-part" in kinds or "patient-name" in kinds
    assert "identity-removed" in {f.check for f in report.errors}


def test_pydicom_ct_small_stripped_by_hand_is_clean(tmp_path: Path) -> None:
    src = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(src)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "StudyDate", "SeriesDate",
                    "AcquisitionDate", "ContentDate", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                    "OperatorsName", "RequestingPhysician", "StationName", "PatientAddress", "InstanceCreationDate",
                    "OtherPatientIDsSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.remove_private_tags()
    for elem in ds.iterall():
        if elem.VR == "UI" and not tk.is_well_known_uid(str(elem.value), elem.keyword):
            elem.value = "2.25." + str(abs(hash(str(elem.value))) + 1)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    out = tmp_path / "out"
    out.mkdir()
    ds.save_as(out / "ct.dcm")
    report = verify_outputs(out, [src])
    assert report.clean, [f.to_dict(reveal=True) for f in report.errors]


def test_short_uids_are_not_tokens() -> None:
    index = tk.TokenIndex()
    for uid in ("0", "1.2.3.4.5", "9.8.7.6"):
        index.add_uid(uid, "sop-instance-uid")
    index.add_uid("1.2.3.4.0.1", "sop-instance-uid")
    assert set(index.uids) == {"1.2.3.4.0.1"}
    assert _hits(index, "0.5\\0.5 1.2.3.4.5") == set()


def test_device_vocabulary_is_not_an_institution_token() -> None:
    index = tk.TokenIndex()
    tk.add_institution_name(index, "TOSHIBA", "institution-name")
    tk.add_institution_name(index, "Toshiba Hospital Nord", "institution-name")
    tk.add_person_name(index, "Toshiba^Jean", "patient-name")
    index.add_public("TOSHIBA")
    index.drop_public()
    assert {k: sorted(e.kinds) for k, e in index.phrases.items()} == {
        "TOSHIBA HOSPITAL NORD": ["institution-name"],
        "TOSHIBA": ["institution-name", "institution-name-part", "patient-name-part"],  # a patient's name stays
        "NORD": ["institution-name-part"],
        "JEAN": ["patient-name-part"],
    }


def test_drop_public_removes_institution_tokens_that_are_device_vocabulary() -> None:
    """``drop_public`` drops a token only when it is device vocabulary AND only an institution's:
    ``SIEMENS`` as an institution name goes, the phrase around it and a patient's name stay."""
    index = tk.TokenIndex()
    tk.add_institution_name(index, "SIEMENS", "institution-name")
    tk.add_institution_name(index, "CHU SIEMENS NORD", "institution-name")
    tk.add_person_name(index, "PHILIPS^Anne", "patient-name")
    tk.add_institution_name(index, "PHILIPS", "institution-name")
    for value in ("SIEMENS", "Philips Medical Systems"):
        index.add_public(value)
    assert index.public >= {"SIEMENS", "PHILIPS", "PHILIPS MEDICAL SYSTEMS"}
    assert "SIEMENS" in index.phrases
    index.drop_public()
    assert "SIEMENS" not in index.phrases
    assert _hits(index, "SIEMENS") == set()
    assert {k: sorted(e.kinds) for k, e in index.phrases.items()} == {
        "CHU SIEMENS NORD": ["institution-name"],
        "NORD": ["institution-name-part"],
        "PHILIPS": ["institution-name", "institution-name-part", "patient-name-part"],  # a patient's name stays
        "ANNE": ["patient-name-part"],
    }
    assert _hits(index, "CHU Siemens Nord") == {("CHU SIEMENS NORD", "institution-name"), ("NORD", "institution-name-part")}


@pytest.mark.parametrize("copies,workers", [(1, 1), (2 * 48, 2)], ids=["in-process", "worker-pool"])
def test_verify_does_not_flag_a_manufacturer_that_is_also_the_institution_name(tmp_path: Path, copies: int,
                                                                               workers: int) -> None:
    """End to end: a source whose Institution Name is its Manufacturer (``TOSHIBA``, as some sites
    write it); the de-identified copy keeps the Manufacturer, as Basic does, and is clean. Without
    ``drop_public`` verify would call every kept Manufacturer an institution leak."""
    from sfr_gateway.deid import deidentify_file
    from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, to_bytes

    ds = minimal_ct()
    ds.Manufacturer = "TOSHIBA"
    ds.InstitutionName = "TOSHIBA"
    src = tmp_path / "src" / "ct.dcm"
    src.parent.mkdir()
    src.write_bytes(to_bytes(ds))
    result = deidentify_file(src, plan_for("sfr-covid"), KEYS_A)
    out = tmp_path / "out"
    out.mkdir()
    for i in range(copies):  # 96 files: verify reads them with a pool of worker processes
        (src.parent / f"ct{i}.dcm").write_bytes(src.read_bytes())
        (out / f"ct{i}.dcm").write_bytes(result.data)
    assert pydicom.dcmread(out / "ct0.dcm").Manufacturer == "TOSHIBA"
    report = verify_outputs(out, [src.parent], workers=workers)
    assert report.clean, [f.to_dict(reveal=True) for f in report.errors]
