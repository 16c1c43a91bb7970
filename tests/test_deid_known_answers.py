"""Known answers for every keyed value the gateway derives, and domain separation between them.

Each value is pinned to a literal computed once from a fixed secret and fixed inputs: a change
of construction (purpose label, separator, truncation, encoding, key derivation) changes the
literal, and so fails here even when every round-trip test still passes (issue 21: with the
purpose label removed from the HMAC input, the pseudonym and the date offset came from one
digest and no other test noticed). A changed literal is a changed pseudonym for every patient
already sent: never update one without a migration plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfr_gateway.audit.mask import Masker
from sfr_gateway.deid import deidentify_file
from sfr_gateway.deid.pseudonym import (
    PURPOSE_AUDIT_FINGERPRINT,
    PURPOSE_PATTERN,
    RESERVED_PURPOSES,
    Pseudonymizer,
    PseudonymKeys,
    patient_key,
)
from sfr_gateway.keys.files import secret_fingerprint
from sfr_gateway.ledger import open_ledger
from sfr_gateway.mapping.derive import MappingEntry
from sfr_gateway.mapping.store import MappingStore
from tests.deid_fixtures import minimal_ct, plan_for, reread, to_bytes

SECRET = bytes(range(32))  # 000102...1f
MAPPING_KEY = bytes(range(100, 132))
KEYS = PseudonymKeys(SECRET, "TEST01")
PID, ISSUER = "12345678", "HOSP-A"
STUDY_UID = "1.2.826.0.1.3680043.10.1374.7.2"

PATIENT = "TEST01-LWJ35YT6QYWT"
NEW_STUDY_UID = "2.25.321297801983452844722996131211995946056"
OFFSET = -749
#: HMAC-SHA256(SECRET, purpose || 0x00 || "12345678"), hex, for each purpose.
DIGESTS = {
    "patient": "3336654f3e1cc0c3937211b054ceb2f7647b677381b2ef43a514db376d47bc0d",
    "uid": "cb1ba10d5d6a6eb17bd04cd70e9b597976b0d19291d9e30566efe0a8a83d8623",
    "date-offset": "3d89c9666a7dd48d38715a0221f42f37467f973d551690da053c9ec8e444f7f1",
    "audit-fingerprint": "2ef997722e5cc48188104102ea95e5b76e69869f270c0ced8b9d40efb53a4f05",
    "accession": "2584aecdf90fc67b3cce34c9956b02595f3dff4fabdebb520f177b4176a489f0",
    "study-id": "7f6008073c58fb6427f5f7fd32efcfc8f5470298e7dcb878942508e39eaa2d2e",
}


def _pz(offset_range: tuple[int, int] = (-1095, -1)) -> Pseudonymizer:
    return Pseudonymizer(KEYS, offset_range=offset_range)


def test_the_construction_is_hmac_sha256_of_purpose_nul_value() -> None:
    """An independent computation of the documented construction, for every purpose."""
    pz = _pz()
    for purpose, expected in DIGESTS.items():
        spelled = hmac.new(SECRET, purpose.encode("ascii") + b"\x00" + PID.encode("utf-8"), hashlib.sha256).hexdigest()
        assert spelled == expected, purpose
        assert pz.digest(purpose, PID).hex() == expected, purpose


def test_patient_pseudonym_known_answers() -> None:
    pz = _pz()
    assert patient_key(PID, ISSUER) == "12345678\x00HOSP-A"
    assert patient_key(" 12345678 ", " HOSP-A ") == "12345678\x00HOSP-A"
    assert patient_key("", "", STUDY_UID) == "\x01" + STUDY_UID
    assert patient_key("") == patient_key("  ", "HOSP-A") == "\x01"  # no ID, no fallback given
    assert pz.patient(patient_key(PID, ISSUER)) == PATIENT
    assert pz.patient(patient_key(PID)) == "TEST01-NEGMMFFPS4E6"  # the issuer is part of the key
    assert pz.patient(patient_key("", "", "1.2.3")) == "TEST01-BBWPSS2SAZ7W"  # no ID: per-study fallback
    assert Pseudonymizer(PseudonymKeys(SECRET, "SFR042")).patient(patient_key(PID, ISSUER)) == "SFR042-LWJ35YT6QYWT"


def test_identifier_known_answers() -> None:
    pz = _pz()
    assert pz.identifier("accession", "ACC778899", 16) == "QGO5EHRID6XE3G56"
    assert pz.identifier("accession", "ACC778899", 8) == "QGO5EHRI"  # a prefix: the length only cuts
    assert pz.identifier("accession", "ACC778899", 64) == "QGO5EHRID6XE3G56"  # never more than 16
    assert pz.identifier("accession", "ACC778899", 1) == "QGO5"  # never fewer than 4
    assert pz.identifier("study-id", "S4455", 16) == "MMH63XJYDUDR3QZZ"


def test_uid_and_date_offset_known_answers() -> None:
    pz = _pz()
    assert pz.uid(STUDY_UID) == NEW_STUDY_UID
    assert int(NEW_STUDY_UID[5:]) == int.from_bytes(pz.digest("uid", STUDY_UID)[:16], "big")
    assert pz.date_offset(patient_key(PID, ISSUER)) == OFFSET
    assert _pz((-30, 30)).date_offset(patient_key(PID, ISSUER)) == 1
    n = int.from_bytes(pz.digest("date-offset", patient_key(PID, ISSUER))[:8], "big")
    assert OFFSET == -1095 + n % 1095


def test_audit_fingerprint_known_answers() -> None:
    masker = Masker(SECRET)
    assert masker.fingerprint(b"DUPONT^JEAN") == "9a14acd270be"
    assert masker.value("DUPONT^JEAN", "PN") == {"kind": "person-name", "length": 11, "vm": 1, "fingerprint": "9a14acd270be"}
    long = b"x" * 300  # the uncached path
    assert masker.fingerprint(long) == _pz().digest(PURPOSE_AUDIT_FINGERPRINT, "x" * 300).hex()[:12]
    # the audit's domain is the one the pseudonymiser reserves (profiles may not use it)
    assert masker.fingerprint(PID.encode()) == DIGESTS["audit-fingerprint"][:12]


def test_secret_and_mapping_key_fingerprints_and_indexes(tmp_path: Path) -> None:
    assert secret_fingerprint(SECRET) == "11e6cb3f7a021ece"
    assert KEYS.fingerprint() == "11e6cb3f7a021ece"
    with open_ledger(tmp_path / "state.db") as ledger:
        store = MappingStore(ledger, MAPPING_KEY, SECRET)
        assert store.key_id == "d1d9c5806a1a26d4" and store.secret_fp == "11e6cb3f7a021ece"
        assert store.patient_ref(PID, ISSUER).hex() == "9ae68d0e0893caf4025191d2cf6e4eae435324f5d5ab64ac478f3db4225c3211"
        assert store.pid_ref(PID).hex() == "7c8088a6f93fff18066fb9a66951b4773105c4c2fb76e3684c74243d7d170732"
        assert store.pseudonym_ref(PATIENT).hex() == "09fb60dd8fb17ea31bb3ca492ec9f49a1df543b5f3ceb57ce145b9b16b79f654"
        entry = MappingEntry(pseudonym=PATIENT, patient_id=PID, issuer=ISSUER, study_uid=STUDY_UID,
                             new_study_uid=NEW_STUDY_UID)
        assert store.study_ref(entry, store.secret_fp).hex() == (
            "56868640b8e767af5021d72a11b31a87803540fa895ed98e485ee5aa26a12487")
        # the index key is derived from the mapping key, never the key itself
        index_key = hmac.new(MAPPING_KEY, b"sfr-gateway/mapping/index", hashlib.sha256).digest()
        assert store.pid_ref(PID) == hmac.new(index_key, b"pid\x00" + PID.encode(), hashlib.sha256).digest()


def test_engine_output_known_answers() -> None:
    """The engine writes exactly these values for this input (sfr-covid, the national default)."""
    ds = minimal_ct(study_uid=STUDY_UID, patient_id=PID)
    ds.IssuerOfPatientID = ISSUER
    ds.SeriesDate = "20200316"
    ds.AcquisitionDateTime = "20200315101500.25+0100"
    result = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS)
    out = reread(result.data)
    assert result.patient_pseudonym == PATIENT
    assert out.PatientID == PATIENT and out.PatientName == PATIENT
    assert out.AccessionNumber == "QGO5EHRID6XE3G56"  # ACC778899, purpose accession
    assert out.StudyID == "MMH63XJYDUDR3QZZ"  # S4455, purpose study-id
    assert out.StudyInstanceUID == NEW_STUDY_UID
    assert out.SeriesInstanceUID == "2.25.191802193155901125374796956754946737612"
    assert out.SOPInstanceUID == "2.25.287837904345602276337771814747048737910"
    assert out.FrameOfReferenceUID == "2.25.139646629373151821051041422934241870664"
    shifted = dt.date(2020, 3, 15) + dt.timedelta(days=OFFSET)
    assert out.StudyDate == f"{shifted:%Y%m%d}" == "20180225"
    assert out.SeriesDate == "20180226"
    assert out.AcquisitionDateTime == "20180225101500.25+0100"
    assert result.relpath().as_posix() == f"{PATIENT}/{NEW_STUDY_UID}/{out.SeriesInstanceUID}/{out.SOPInstanceUID}.dcm"


# ------------------------------------------------------------------------ domain separation

def _purposes() -> list[str]:
    """Every HMAC purpose in use: the gateway's own and every packaged profile's [pseudonyms]."""
    found = {"patient", *RESERVED_PURPOSES}
    for name in ("basic", "sfr-covid"):
        found.update(plan_for(name).pseudonyms.values())
    return sorted(found)


def _bits_apart(a: bytes, b: bytes) -> int:
    return bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")


def test_every_purpose_in_use_is_listed() -> None:
    assert {"patient", "uid", "date-offset", "audit-fingerprint", "accession", "study-id"} <= set(_purposes())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(max_size=40))
def test_two_purposes_never_give_related_outputs(value: str) -> None:
    """For one input, the digests of two purposes look independent: 256 bits that differ in
    about half their positions (independent digests differ in 128 +/- 8; the bounds are 8 sigma),
    so no output of one purpose (a pseudonym's 60 visible bits) tells anything about another's
    (the secret date offset, an audit fingerprint)."""
    pz = _pz()
    digests = {p: pz.digest(p, value) for p in _purposes()}
    for (p, a), (q, b) in itertools.combinations(digests.items(), 2):
        assert 64 <= _bits_apart(a, b) <= 192, (p, q)
    pkey = patient_key(value, ISSUER)
    pseudonym = pz.patient(pkey).split("-", 1)[1]
    for p in _purposes():
        if p != "patient":
            assert pz.identifier(p, pkey, 16)[:12] != pseudonym, p
    assert Masker(SECRET).fingerprint(value.encode()) != digests["patient"].hex()[:12]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(min_size=1, max_size=30))
def test_mapping_index_kinds_never_give_related_references(tmp_path: Path, value: str) -> None:
    with open_ledger(tmp_path / "state.db") as ledger:
        store = MappingStore(ledger, MAPPING_KEY, SECRET)
        refs = {kind: store.ref(kind, value) for kind in ("patient", "pid", "pseudonym", "study")}
    for (p, a), (q, b) in itertools.combinations(refs.items(), 2):
        assert 64 <= _bits_apart(a, b) <= 192, (p, q)


@pytest.mark.parametrize("purpose", ["patient", "uid", "date-offset", "accession"])
def test_purpose_and_value_cannot_trade_bytes(purpose: str) -> None:
    """The 0x00 separator: ("accession", "1X") and ("accession1", "X") are different inputs."""
    pz = _pz()
    assert pz.digest(purpose, "1X") != pz.digest(purpose + "1", "X")
    # (a purpose holding 0x00 could: profiles may not name one, see PURPOSE_PATTERN)
    assert not PURPOSE_PATTERN.match(purpose + "\x00")


# ------------------------------------------------------------------ the key input (mutation campaign)

def _whole(message: str) -> str:
    """A ``pytest.raises`` pattern matching exactly ``message`` (the operator reads it)."""
    return f"^{re.escape(message)}$"


def test_the_default_offset_range_is_three_years_back() -> None:
    """``Pseudonymizer(keys)`` without a range: -1095..-1 days, the known answer above."""
    assert Pseudonymizer(KEYS).date_offset(patient_key(PID, ISSUER)) == OFFSET
    assert Pseudonymizer(KEYS, offset_range=(-1095, -1)).date_offset(patient_key(PID, ISSUER)) == OFFSET
    offsets = {Pseudonymizer(KEYS).date_offset(f"p{i}") for i in range(3000)}
    assert min(offsets) >= -1095 and max(offsets) <= -1 and {-1095, -1} <= offsets  # both ends reached


def test_a_one_day_range_is_a_fixed_offset_and_a_reversed_one_is_refused() -> None:
    assert {Pseudonymizer(KEYS, offset_range=(-7, -7)).date_offset(f"p{i}") for i in range(50)} == {-7}
    with pytest.raises(ValueError, match=_whole("date offset range is reversed")):
        Pseudonymizer(KEYS, offset_range=(-1, -7))


def test_pseudonym_keys_refuse_a_bad_secret_or_site_and_never_show_the_secret() -> None:
    with pytest.raises(ValueError, match=_whole("the pseudonym secret must be exactly 32 bytes")):
        PseudonymKeys(bytes(31), "TEST01")
    with pytest.raises(ValueError, match=_whole("the pseudonym secret must be exactly 32 bytes")):
        PseudonymKeys("x" * 32, "TEST01")  # type: ignore[arg-type]  # text, even of the right length
    with pytest.raises(ValueError, match=_whole("site id must be 1-24 characters: letters, digits, '-' or '_'")):
        PseudonymKeys(SECRET, "bad site")
    assert SECRET.hex() not in repr(KEYS) and repr(SECRET) not in repr(KEYS) and "secret" not in repr(KEYS)
    with pytest.raises(AttributeError):  # frozen: a Pseudonymizer's keys cannot be swapped under it
        KEYS.secret = bytes(32)  # type: ignore[misc]


def test_cached_answers_equal_fresh_ones() -> None:
    pz = _pz()
    first = [(pz.patient(f"k{i}"), pz.date_offset(f"k{i}")) for i in range(20)]
    again = [(pz.patient(f"k{i}"), pz.date_offset(f"k{i}")) for i in range(20)]
    fresh = [(_pz().patient(f"k{i}"), _pz().date_offset(f"k{i}")) for i in range(20)]
    assert first == again == fresh
    assert all(isinstance(p, str) and p.startswith("TEST01-") and isinstance(o, int) for p, o in again)
