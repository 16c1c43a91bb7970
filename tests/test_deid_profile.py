"""Profiles: validation at load time, overrides, private keeps, masks, dates and text helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from sfr_gateway.deid import available_profiles, deidentify_file, load_profile
from sfr_gateway.deid.dates import clamp_age, shift_da, shift_dt
from sfr_gateway.deid.describe import describe
from sfr_gateway.deid.text import PhiTokens, clean_text
from sfr_gateway.errors import DicomError, ProfileError
from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, reread, to_bytes


def _profile(tmp_path: Path, body: str) -> str:
    path = tmp_path / "custom.toml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_packaged_profiles_load() -> None:
    assert {"basic", "sfr-covid"} <= set(available_profiles())
    covid = load_profile("sfr-covid")
    assert set(covid.options) == {"retain-patient-characteristics", "retain-long-modified-dates", "clean-descriptors",
                                  "retain-safe-private", "clean-graphics", "clean-pixel-data"}
    info = describe(plan_for("sfr-covid"))
    assert len(info["attributes"]) == 657
    by_tag = {r["tag"]: r for r in info["attributes"]}
    assert by_tag["(0010,0010)"]["action"] == "D" and "override" in by_tag["(0010,0010)"]["rule"]
    assert by_tag["(0008,1030)"]["action"] == "C" and "clean-descriptors" in by_tag["(0008,1030)"]["rule"]
    assert by_tag["(0008,0080)"]["action"] == "X/Z/D"  # institution identity not retained


@pytest.mark.parametrize("body,fragment", [
    ('name="x"\noptions=["retain-everything"]', "unknown option 'retain-everything'"),
    ('name="x"\n[[override]]\nkeyword="PatientNam"\naction="K"', "unknown keyword 'PatientNam'"),
    ('name="x"\n[[override]]\ntag="(0010,001)"\naction="K"', "not of the form"),
    ('name="x"\n[[override]]\nkeyword="PatientName"\naction="KEEP"', "unknown action 'KEEP'"),
    ('name="x"\noptions=["retain-long-full-dates","retain-long-modified-dates"]', "exclude each other"),
    ('name="x"\nfavourite_colour="blue"', "unknown key(s) ['favourite_colour']"),
    ('name="x"\n[sop_classes]\nallow=["CatImageStorage"]', "unknown SOP Class 'CatImageStorage'"),
    ('name="x"\nextends="nope"', "unknown profile 'nope'"),
    ('name="x"\n[[private_keep]]\ngroup="0010"\ncreator="A"\nelement="10"', "group must be odd"),
    ('name="x"\n[dates]\noffset_days=[-10, 10]', "not spanning 0"),
    ('name = [broken', "not valid TOML"),
    # issue 19: a profile must not reuse an HMAC domain the gateway derives itself
    ('name="x"\n[pseudonyms]\nAccessionNumber="uid"', "purpose 'uid' is reserved"),
    ('name="x"\n[pseudonyms]\nStudyID="date-offset"', "purpose 'date-offset' is reserved"),
    ('name="x"\n[pseudonyms]\nStudyID="audit-fingerprint"', "purpose 'audit-fingerprint' is reserved"),
    ('name="x"\n[pseudonyms]\nStudyID="uid\\u0000x"', "must be 1-32 lower-case letters"),
    ('name="x"\n[pseudonyms]\nStudyID=7', "must be 1-32 lower-case letters"),
])
def test_invalid_profiles_fail_at_load_with_a_fix(tmp_path: Path, body: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(_profile(tmp_path, body))
    assert fragment in str(info.value)


def test_reserved_purposes_cover_every_domain_the_gateway_derives() -> None:
    from sfr_gateway.audit import mask
    from sfr_gateway.deid import pseudonym

    assert mask._PURPOSE == pseudonym.PURPOSE_AUDIT_FINGERPRINT.encode() + b"\x00"
    assert {pseudonym.PURPOSE_UID, pseudonym.PURPOSE_DATE_OFFSET} <= pseudonym.RESERVED_PURPOSES
    assert pseudonym.PURPOSE_PATIENT not in pseudonym.RESERVED_PURPOSES  # profiles name it on purpose


def test_unknown_profile_name_lists_choices() -> None:
    with pytest.raises(ProfileError, match="basic, sfr-covid"):
        load_profile("sfr-covd")


def test_site_overrides_keep_and_remove(tmp_path: Path) -> None:
    ds = minimal_ct()
    ds.StationName = "CT01"
    ds.BodyPartExamined = "CHEST"
    ds.private_block(0x0045, "ACME_1", create=True).add_new(0x22, "LO", "kernel B")
    plan = plan_for("sfr-covid", site_overrides=[
        {"keyword": "StationName", "action": "K", "reason": "our station names are generic"},
        {"tag": "(0018,0015)", "action": "X", "reason": "not needed"},
    ], site_private_keep=[{"group": "0045", "creator": "ACME_1", "element": "22"}])
    result = deidentify_file(to_bytes(ds), plan, KEYS_A)
    out = reread(result.data)
    assert out.StationName == "CT01"
    assert "BodyPartExamined" not in out
    assert out.private_block(0x0045, "ACME_1")[0x22].value == "kernel B"
    rules = {c.keyword: c.rule for c in result.changes}
    assert "site override" in rules["BodyPartExamined"]


def test_mask_layout_blanks_region_and_records_option(tmp_path: Path) -> None:
    body = '''
name = "masked"
extends = "sfr-covid"
[[mask]]
name = "acme dose screen"
when = { SOPClassUID = '^1\\.2\\.840\\.10008\\.5\\.1\\.4\\.1\\.1\\.7$', Manufacturer = 'ACME' }
regions = [[0, 0, 4, 2]]
'''
    plan = plan_for(_profile(tmp_path, body))
    ds = minimal_ct(rows=4, cols=8)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Manufacturer = "ACME"
    ds.BurnedInAnnotation = "YES"
    ds.PixelData = bytes([0x11] * 64)
    out = reread(deidentify_file(to_bytes(ds), plan, KEYS_A).data)
    assert out.BurnedInAnnotation == "NO"
    pixels = out.PixelData
    assert pixels[:8] == bytes(8) and pixels[16:24] == bytes(8)  # rows 0-1, columns 0-3 blanked
    assert pixels[8:16] == bytes([0x11] * 8) and pixels[32:] == bytes([0x11] * 32)
    assert "113101" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    ds.Manufacturer = "OTHER"  # no mask matches: the suspicious image is refused
    with pytest.raises(DicomError) as info:
        deidentify_file(to_bytes(ds), plan, KEYS_A)
    assert info.value.reason == "burned-in-suspected"


@pytest.mark.parametrize("attrs,reason", [
    ({"BurnedInAnnotation": "YES"}, "Burned In Annotation"),
    ({"Manufacturer": "GE MEDICAL SYSTEMS", "SeriesDescription": "Dose Report"}, "GE dose"),
    ({"Manufacturer": "SIEMENS", "ImageType": ["DERIVED", "SECONDARY"], "Rows": 860}, "Siemens"),
    ({"Manufacturer": "Philips", "ImageType": ["DERIVED", "SECONDARY", "DOSE"]}, "Philips"),
    ({"Manufacturer": "TOSHIBA", "ManufacturerModelName": "Aquilion ONE", "ImageType": ["DERIVED", "SECONDARY"]},
     "Toshiba"),
])
def test_burned_in_triage_refuses_with_reason(attrs: dict[str, object], reason: str) -> None:
    ds = minimal_ct()
    for key, value in attrs.items():
        setattr(ds, key, value)
    if "Rows" in attrs:
        ds.Columns = 2
        ds.PixelData = bytes(860 * 2 * 2)
    with pytest.raises(DicomError) as info:
        deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A)
    assert info.value.reason == "burned-in-suspected" and reason in info.value.detail


def test_patient_age_clamped_and_characteristics_kept() -> None:
    ds = minimal_ct()
    ds.PatientAge = "093Y"
    ds.PatientWeight = "70"
    out = reread(deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A).data)
    assert out.PatientAge == "090Y" and out.PatientSex == "F" and out.PatientWeight == 70
    assert out.PatientBirthDate == ""
    basic = reread(deidentify_file(to_bytes(ds), plan_for("basic"), KEYS_A).data)
    assert "PatientAge" not in basic and basic.PatientSex == ""


def test_private_uid_and_dates_from_tcia_kb(tmp_path: Path) -> None:
    body = 'name = "kb"\nextends = "sfr-covid"\n[private]\nuse_tcia_kb = true\n'
    plan = plan_for(_profile(tmp_path, body))
    ds = minimal_ct()
    block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
    block.add_new(0x07, "UI", "1.2.840.113619.2.55.3.1234")  # Exam ID: TCIA "h"
    block.add_new(0x0D, "DT", "20200315101010")  # Scan Date Time: TCIA "o"
    out = reread(deidentify_file(to_bytes(ds), plan, KEYS_A).data)
    kept = out.private_block(0x0009, "GEMS_PETD_01")
    assert kept[0x07].value.startswith("2.25.")
    assert kept[0x0D].value != "20200315101010" and kept[0x0D].value.endswith("101010")


def test_dates_keep_precision_and_zone() -> None:
    assert shift_da("20200301", -1) == "20200229"
    assert shift_dt("2020", -400) == "2019"
    assert shift_dt("202003", -40) == "202002"
    assert shift_dt("20200301235959.123456-0500", 10) == "20200311235959.123456-0500"
    assert shift_da("20200101-20200131", -1) == "20191231-20200130"
    with pytest.raises(ValueError):
        shift_da("2020-03-01x", 1)
    assert clamp_age("095Y", 89) == "090Y" and clamp_age("045Y", 89) == "045Y" and clamp_age("011M", 89) == "011M"


def test_clean_text_keeps_clinical_words_and_removes_accented_tokens() -> None:
    tokens = PhiTokens()
    tokens.add_value("LEFÈVRE Hélène", split_words=True)
    tokens.add_value("CHU de Saint-Étienne", split_words=False)
    frozen = tokens.freeze()
    assert clean_text("CT THORAX SANS INJECTION", frozen) == "CT THORAX SANS INJECTION"
    assert clean_text("Contrôle Mme lefevre HELENE 12/03/2020", frozen) == "Contrôle Mme"
    assert clean_text("Examen CHU DE SAINT ETIENNE urgent", frozen) == "Examen urgent"
    item = Dataset()
    item.CodeValue = "1"
    assert clean_text("", frozen) == ""


def test_change_records_for_the_audit() -> None:
    ds = minimal_ct()
    ds.BodyPartExamined = "CHEST"
    item = Dataset()
    item.AccessionNumber = "ACC778899"
    ds.RequestAttributesSequence = [item]
    result = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A, write=False, record_kept=True,
                             keep_values=True)
    assert result.data is None
    by_path = {c.path: c for c in result.changes}
    name = by_path["PatientName"]
    assert (name.action, name.code, name.before, name.after) == ("pseudonymised", "D", "DUPONT^JEAN",
                                                                 result.patient_pseudonym)
    assert "keyed patient pseudonym" in name.rule
    nested = by_path["RequestAttributesSequence[0].AccessionNumber"]
    assert nested.action == "pseudonymised" and nested.before == "ACC778899" and nested.after != "ACC778899"
    assert by_path["BodyPartExamined"].action == "kept" and by_path["BodyPartExamined"].before == "CHEST"
    assert by_path["StudyDate"].action == "shifted"
    quiet = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A, record=False)
    assert quiet.changes == () and quiet.data == deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A).data
    plain = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A)
    assert all(c.before is None and c.after is None for c in plain.changes)  # values only on request
    assert not any(c.action == "kept" for c in plain.changes)
