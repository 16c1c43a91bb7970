"""Hypothesis properties of the engine: keyed determinism, key separation, no PHI, dates, UIDs."""

from __future__ import annotations

import datetime as dt
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from sfr_gateway.deid import deidentify_file
from tests.deid_fixtures import (
    KEYS_A,
    KEYS_B,
    minimal_ct,
    norm,
    plan_for,
    pz_for,
    reread,
    sequence_of,
    to_bytes,
)

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACCENTED = "éèêëàâäîïôöùûüçñÉÈÊÀÂÎÔÛÇÑ"
name_part = st.text(alphabet=st.sampled_from("ABCDEFGHIJKLMNOPRSTUVZabcdefghijkmnoprstuvz" + ACCENTED),
                    min_size=4, max_size=12).filter(lambda s: any(c in ACCENTED for c in s))
patient_ids = st.from_regex(r"[1-9][0-9]{7,10}", fullmatch=True)
dates = st.dates(min_value=dt.date(1995, 1, 1), max_value=dt.date(2025, 12, 31))
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def planted(family: str, given_name: str, pid: str, study_date: dt.date, *, suffix: str = "1",
            ref_uid: str | None = None) -> Dataset:
    """A CT image whose identifiers, free text, sequences and private block carry the tokens."""
    ds = minimal_ct(name=f"{family}^{given_name}", patient_id=pid,
                    sop_uid=f"1.2.826.0.1.3680043.10.1374.8.{pid}.{suffix}",
                    study_uid=f"1.2.826.0.1.3680043.10.1374.8.{pid}.{study_date:%Y%m%d}")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.AcquisitionDateTime = study_date.strftime("%Y%m%d") + "101500.25+0100"
    ds.StudyDescription = f"TDM THORAX {family}"
    ds.SeriesDescription = "THORAX 1.25 POUMON"
    ds.ImageComments = f"Contrôle {given_name} {family}"
    ds.AccessionNumber = "A" + pid[:8]
    other = Dataset()
    other.PatientID = pid + "9"
    ds.OtherPatientIDsSequence = sequence_of(other)
    request = Dataset()
    request.AccessionNumber = "A" + pid[:8]
    request.RequestedProcedureDescription = f"Scanner {family}"
    ds.RequestAttributesSequence = sequence_of(request)
    block = ds.private_block(0x0029, "SITE_PHI", create=True)
    block.add_new(0x10, "LO", f"{family} {pid}")
    if ref_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = ref_uid
        ds.ReferencedImageSequence = sequence_of(ref)
    return ds


def text_of(ds: Dataset) -> str:
    """Every value except Pixel Data, as text (both decodings of bytes)."""
    parts = [str(e.value) for e in ds.file_meta]
    for elem in ds.iterall():
        if elem.tag == 0x7FE00010 or elem.VR == "SQ":
            continue
        value = elem.value
        parts.append(value.decode("latin-1") + value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return "\n".join(parts)


@SETTINGS
@given(family=name_part, given_name=name_part, pid=patient_ids, day=dates)
def test_same_key_same_output(family: str, given_name: str, pid: str, day: dt.date) -> None:
    data = to_bytes(planted(family, given_name, pid, day))
    plan = plan_for("sfr-covid")
    first = deidentify_file(data, plan, KEYS_A)
    second = deidentify_file(data, plan, pz_for(plan, KEYS_A))
    assert first.data == second.data
    assert first.relpath() == second.relpath()


@SETTINGS
@given(family=name_part, given_name=name_part, pids=st.lists(patient_ids, min_size=5, max_size=5, unique=True), day=dates)
def test_other_key_other_pseudonyms_uids_offsets(family: str, given_name: str, pids: list[str], day: dt.date) -> None:
    plan = plan_for("sfr-covid")
    offsets_a, offsets_b = [], []
    for pid in pids:
        data = to_bytes(planted(family, given_name, pid, day))
        a = deidentify_file(data, plan, KEYS_A)
        b = deidentify_file(data, plan, KEYS_B)
        assert a.patient_pseudonym != b.patient_pseudonym
        assert a.sop_uid != b.sop_uid and a.study_uid != b.study_uid and a.series_uid != b.series_uid
        offsets_a.append(reread(a.data).StudyDate)
        offsets_b.append(reread(b.data).StudyDate)
    assert offsets_a != offsets_b


@SETTINGS
@given(family=name_part, given_name=name_part, pid=patient_ids, day=dates)
def test_no_original_token_survives_basic(family: str, given_name: str, pid: str, day: dt.date) -> None:
    ds = planted(family, given_name, pid, day)
    out = reread(deidentify_file(to_bytes(ds), plan_for("basic"), KEYS_A).data)
    text = text_of(out)
    folded = norm(text)
    for token in (family, given_name):
        assert token not in text and norm(token) not in folded
    for token in (pid, "A" + pid[:8], ds.SOPInstanceUID, ds.StudyInstanceUID, day.strftime("%Y%m%d")):
        assert token not in text


@SETTINGS
@given(family=name_part, given_name=name_part, pid=patient_ids, first=dates, gap=st.integers(0, 2000))
def test_date_intervals_within_a_patient_survive(family: str, given_name: str, pid: str, first: dt.date, gap: int) -> None:
    second = first + dt.timedelta(days=gap)
    plan = plan_for("sfr-covid")
    outs = [reread(deidentify_file(to_bytes(planted(family, given_name, pid, d, suffix=str(i))), plan, KEYS_A).data)
            for i, d in enumerate((first, second))]
    got = [dt.datetime.strptime(o.StudyDate, "%Y%m%d").date() for o in outs]
    assert (got[1] - got[0]).days == gap
    assert got[0] != first
    for out in outs:  # DT keeps its precision, fraction and time zone
        assert re.fullmatch(r"\d{8}101500\.25\+0100", out.AcquisitionDateTime)
    assert outs[0].PatientID == outs[1].PatientID


@SETTINGS
@given(family=name_part, given_name=name_part, pid=patient_ids, day=dates)
def test_uids_valid_and_consistent_across_files(family: str, given_name: str, pid: str, day: dt.date) -> None:
    plan = plan_for("sfr-covid")
    loc = planted(family, given_name, pid, day, suffix="0")
    image = planted(family, given_name, pid, day, suffix="1", ref_uid=loc.SOPInstanceUID)
    out_loc = reread(deidentify_file(to_bytes(loc), plan, KEYS_A).data)
    out_img = reread(deidentify_file(to_bytes(image), plan, KEYS_A).data)
    assert out_img.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out_loc.SOPInstanceUID
    assert out_img.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    assert out_img.StudyInstanceUID == out_loc.StudyInstanceUID
    assert out_img.FrameOfReferenceUID == out_loc.FrameOfReferenceUID
    for out in (out_loc, out_img):
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        for elem in [*out.iterall(), *out.file_meta]:
            if elem.VR != "UI" or not elem.value:
                continue
            for uid in (elem.value if isinstance(elem.value, list) else [elem.value]):
                assert len(uid) <= 64 and _UID.match(uid), (elem.keyword, uid)
                assert pid not in uid


@given(value=st.text(min_size=1, max_size=30))
@SETTINGS
def test_uid_derivation_is_valid_for_any_input(value: str) -> None:
    uid = pz_for(plan_for("basic")).uid(value)
    assume(value != uid)
    assert uid.startswith("2.25.") and len(uid) <= 64 and _UID.match(uid)


CLEANED = ("StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments", "PerformedProcedureStepDescription",
           "AdditionalPatientHistory", "ReasonForStudy", "RequestedProcedureDescription", "DerivationDescription")


@SETTINGS
@given(family=name_part, given_name=name_part, pid=patient_ids, day=dates, where=st.sampled_from(CLEANED))
def test_clean_descriptors_remove_every_name_part_from_text_they_keep(family: str, given_name: str, pid: str,
                                                                      day: dt.date, where: str) -> None:
    """Names planted in attributes that Clean Descriptors cleans (kept, minus the tokens), not in
    ones the profile removes: the given name, the family name and the ID go, the clinical words stay
    (issue 21: the earlier property put the name in Image Comments, which Basic deletes anyway)."""
    ds = planted(family, given_name, pid, day)
    for keyword in CLEANED:
        setattr(ds, keyword, "TDM THORAX")
    setattr(ds, where, f"TDM {given_name} THORAX {family.upper()} ({pid})")
    request = Dataset()
    request.RequestedProcedureDescription = f"Scanner {given_name.lower()} THORAX"
    ds.RequestAttributesSequence = sequence_of(request)
    out = reread(deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A).data)
    for value in (out.get(where), out.RequestAttributesSequence[0].RequestedProcedureDescription):
        assert value is not None and "THORAX" in str(value), f"{where} must be cleaned, not removed"
        folded = norm(str(value))
        for token in (family, given_name):
            assert norm(token) not in folded, (where, value)
        assert pid not in str(value)
    text = text_of(out)
    for token in (family, given_name):
        assert norm(token) not in norm(text)
