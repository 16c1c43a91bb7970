"""The gate's decision functions one by one, on a real ledger (issue 21: the survivors of the
mutation campaign over ``consent/gate``, ``consent/identity``, ``consent/policy`` and the
packaging re-checks in ``consent/registry``)."""

from __future__ import annotations

import dataclasses

import pytest
from consent_fixtures import (  # noqa: F401
    TODAY,
    add_studies,
    ledger_fixture,
    signing_key_fixture,
    withdrawer_fixture,
)

from sfr_gateway.consent import registry as lib
from sfr_gateway.consent.gate import NO_PATIENT_ID, decide, decide_studies
from sfr_gateway.consent.identity import Standing
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import Ledger
from sfr_gateway.ledger import instances as isql
from sfr_gateway.ledger.instances import HeaderFacts

EXPLICIT = ConsentPolicy("explicit", 30)
RELEASE_NO_PID = ConsentPolicy("explicit", 30, without_patient_id="release")
UNKNOWN = Standing("unknown", None, False, None)
CONSENTED = Standing("consented", "2026-01-01", False, 1)


def index(ledger: Ledger, identities: list[tuple[str, str, str]]) -> None:
    """One eligible CT instance per (Patient ID, issuer, study UID), each at its own path (a study
    may name several identities: ``add_studies`` gives one path per study and instance number)."""
    scan_id = isql.start_scan(ledger, [b"/fake"])
    rows = []
    for n, (pid, issuer, study) in enumerate(identities):
        facts = HeaderFacts(
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"{study}.{n}", patient_id=pid, issuer=issuer,
            study_uid=study, series_uid=f"{study}.1", modality="CT", body_part="CHEST", study_date="20200401",
            study_description="TDM THORAX", series_description="AXIAL", protocol_name="",
            image_type="ORIGINAL\\PRIMARY\\AXIAL", series_number=1, frames=1, transfer_syntax="1.2.840.10008.1.2.1")
        rows.append((f"/fake/{study}/{n}.dcm".encode(), 100, 1, facts, None))
    isql.record_indexed(ledger, scan_id, rows)
    isql.finish_scan(ledger, scan_id, "complete")


def test_decide_without_patient_id_follows_the_policy_and_only_then() -> None:
    for pid in (None, "", "   "):  # no Patient ID, or one of blanks only: no consent can match it
        assert decide(UNKNOWN, pid, EXPLICIT, TODAY) == NO_PATIENT_ID == "no-patient-id"
        assert decide(UNKNOWN, pid, RELEASE_NO_PID, TODAY) == "releasable"
    # a real Patient ID is decided on its consent, whatever the no-Patient-ID policy says
    assert decide(UNKNOWN, "P1", RELEASE_NO_PID, TODAY) == "unknown"
    assert decide(CONSENTED, "P1", EXPLICIT, TODAY) == "releasable"


def test_studies_without_patient_id_are_held_or_released_by_the_policy(ledger: Ledger) -> None:
    add_studies(ledger, [("", "", "7.1"), ("P1", "CHU", "7.2")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == ["7.2"]
    assert lib.releasable_studies(ledger, RELEASE_NO_PID, TODAY) == ["7.1", "7.2"]
    held = {s.study_uid: s.decision for s in lib.gate(ledger, EXPLICIT, TODAY).studies}
    assert held == {"7.1": "no-patient-id", "7.2": "releasable"}


def test_a_decision_cannot_be_changed_after_the_fact(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU", "8.1")])
    study = lib.gate(ledger, EXPLICIT, TODAY).studies[0]
    assert study.decision == "unknown"
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.decision = "releasable"  # type: ignore[misc]


def test_identities_of_a_study(ledger: Ledger) -> None:
    index(ledger, [("P1", "CHU", "9.1"), ("P2", "CLINIQUE", "9.1"), ("", "", "9.1"), ("P3", "CHU", "9.2")])
    with ledger.snapshot() as conn:
        g = decide_studies(conn, EXPLICIT, TODAY)
    assert sorted(g.identities_of("9.1")) == [("", ""), ("P1", "CHU"), ("P2", "CLINIQUE")]
    assert g.identities_of("9.2") == [("P3", "CHU")]
    assert g.identities_of("9.3") == []


def test_an_instance_without_patient_id_never_takes_a_recorded_patients_consent(ledger: Ledger) -> None:
    """A missing Patient ID is looked up as itself (empty: no record can have it), never as a
    placeholder: exports and registries do hold placeholder IDs such as ``XXXX`` or ``UNKNOWN``,
    and a study without Patient ID must not show (or, under ``release``, rest on) their consent."""
    add_studies(ledger, [("", "", "10.1")])
    for placeholder in ("XXXX", "UNKNOWN", "ANONYMOUS", "0"):
        lib.set_status(ledger, placeholder, "consented", today=TODAY)
    for policy in (EXPLICIT, RELEASE_NO_PID):
        study, = lib.gate(ledger, policy, TODAY).studies
        assert (study.patient_id, study.status, study.effective) == ("", "unknown", None)
