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


def test_a_study_naming_two_identities_is_held_until_both_are_releasable(ledger: Ledger) -> None:
    """The gate's rule for a study whose instances name two patients (a merged or mislabelled
    study): releasable only when both are, every part carrying the blocking decision; the
    packaging re-check (study_release_basis) and the upload re-check (batch_releasable) apply it
    too. (test_consent_gate's two-patient test indexes one path per study and instance number,
    so its second patient replaces the first: it never held two identities.)"""
    from sfr_gateway.consent.registry import ReleaseBasis, batch_releasable, study_release_basis

    index(ledger, [("P1", "CHU", "20.1"), ("P2", "CHU", "20.1"), ("P3", "CHU", "20.2")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    lib.set_status(ledger, "P3", "consented", issuer="CHU", today=TODAY)
    decided = {(s.study_uid, s.patient_id): (s.status, s.decision) for s in lib.gate(ledger, EXPLICIT, TODAY).studies}
    assert decided == {("20.1", "P1"): ("consented", "unknown"), ("20.1", "P2"): ("unknown", "unknown"),
                       ("20.2", "P3"): ("consented", "releasable")}
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == ["20.2"]
    with ledger.snapshot() as conn:
        assert study_release_basis(conn, "20.1", "P1", "CHU", EXPLICIT, TODAY) is None
        assert not batch_releasable(conn, "20.1", EXPLICIT, TODAY)
        assert batch_releasable(conn, "20.2", EXPLICIT, TODAY)
    lib.set_status(ledger, "P2", "consented", issuer="CHU", today=TODAY)
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == ["20.1", "20.2"]
    day = TODAY.isoformat()
    with ledger.snapshot() as conn:
        assert study_release_basis(conn, "20.1", "P1", "CHU", EXPLICIT, TODAY) == ReleaseBasis("consented", day,
                                                                                                "explicit")
        assert study_release_basis(conn, "20.1", "P3", "CHU", EXPLICIT, TODAY) is None  # not in that study
        assert study_release_basis(conn, "20.9", "P1", "CHU", EXPLICIT, TODAY) is None  # no such study
        assert batch_releasable(conn, "20.1", EXPLICIT, TODAY)
        assert not batch_releasable(conn, "20.9", EXPLICIT, TODAY)


def test_a_batch_is_sent_only_if_every_patient_it_holds_is_still_releasable(ledger: Ledger) -> None:
    """The upload re-check covers the patients of the study's batches as well as its eligible
    instances: a batch made for a patient whose instances left the export is still checked."""
    from sfr_gateway.consent.registry import batch_releasable
    from sfr_gateway.ledger.batches import begin_batch

    index(ledger, [("P1", "CHU", "22.1")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    with ledger.transaction() as conn:
        begin_batch(conn, batch_id="b-22", study_uid="22.1", patient_id="P9", issuer="CHU", pseudonym="X",
                    new_study_uid="2.25.1", part=1, consent_status="consented", consent_date=TODAY.isoformat())
    with ledger.snapshot() as conn:
        assert not batch_releasable(conn, "22.1", EXPLICIT, TODAY)  # P9 has no consent
    lib.set_status(ledger, "P9", "consented", issuer="CHU", today=TODAY)
    with ledger.snapshot() as conn:
        assert batch_releasable(conn, "22.1", EXPLICIT, TODAY)


def test_the_release_basis_of_studies_without_patient_id(ledger: Ledger) -> None:
    """Under ``without_patient_id = "release"`` a study without Patient ID is released on the
    basis ``no-patient-id`` (no consent date); under ``hold`` it has none."""
    from sfr_gateway.consent.registry import ReleaseBasis, batch_releasable, release_basis, study_release_basis

    index(ledger, [("", "", "21.1")])
    basis = ReleaseBasis("no-patient-id", "", "explicit")
    assert release_basis(ledger, "", "", RELEASE_NO_PID, TODAY) == basis
    assert release_basis(ledger, "", "", EXPLICIT, TODAY) is None
    with ledger.snapshot() as conn:
        assert study_release_basis(conn, "21.1", "", "", RELEASE_NO_PID, TODAY) == basis
        assert study_release_basis(conn, "21.1", "", "", EXPLICIT, TODAY) is None
        assert batch_releasable(conn, "21.1", RELEASE_NO_PID, TODAY)
        assert not batch_releasable(conn, "21.1", EXPLICIT, TODAY)
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    assert release_basis(ledger, "P1", "CHU", EXPLICIT, TODAY) == ReleaseBasis("consented", TODAY.isoformat(),
                                                                              "explicit")


def test_classify_and_check_policy_say_exactly_why() -> None:
    from sfr_gateway.consent.policy import check_policy, classify
    from sfr_gateway.errors import ConsentError

    assert classify("consented", "2026-01-01", True, EXPLICIT, TODAY) == "withdrawn"  # the flag alone holds it
    assert classify("withdrawn", "2026-01-01", False, EXPLICIT, TODAY) == "withdrawn"
    assert classify("no-such-status", None, False, EXPLICIT, TODAY) == "unknown"
    with pytest.raises(ConsentError, match=r"^consent mode must be one of explicit, non-opposition$"):
        check_policy(ConsentPolicy("opt-out", 30))
    with pytest.raises(ConsentError, match=r"^consent delay_days must be >= 0$"):
        check_policy(ConsentPolicy("explicit", -1))
