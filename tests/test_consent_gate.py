"""The release gate under both modes, coverage, and withdrawal after release."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from consent_fixtures import (  # noqa: F401
    TODAY,
    add_studies,
    ledger_fixture,
    signing_key_fixture,
    test_pseudonym,
    withdrawer_fixture,
)

from sfr_gateway.consent import registry as lib
from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.crypto.signkey import SigningKey
from sfr_gateway.errors import ConsentError
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import Ledger

EXPLICIT = ConsentPolicy("explicit", 30)
NON_OPPOSITION = ConsentPolicy("non-opposition", 30)


@pytest.fixture
def studies(ledger: Ledger) -> Ledger:
    """Five patients, six eligible studies, one non-eligible study."""
    add_studies(ledger, [("P1", "CHU", "1.1"), ("P1", "CHU", "1.2"), ("P2", "CHU", "2.1"), ("P3", "CHU", "3.1"),
                         ("P4", "CHU", "4.1"), ("P5", "CHU", "5.1")])
    add_studies(ledger, [("P1", "CHU", "1.9")], eligible=False)
    return ledger


def test_explicit_mode_releases_only_consented(studies: Ledger, withdrawer: lib.Withdrawer) -> None:
    old = TODAY - dt.timedelta(days=400)
    lib.set_status(studies, "P1", "consented", issuer="CHU", today=TODAY)
    lib.set_status(studies, "P2", "informed", issuer="CHU", effective=old, today=TODAY)
    lib.set_status(studies, "P3", "refused", issuer="CHU", today=TODAY)
    lib.withdraw(studies, "P4", withdrawer, issuer="CHU", today=TODAY)
    assert lib.releasable_studies(studies, EXPLICIT, TODAY) == ["1.1", "1.2"]
    decisions = {s.study_uid: s.decision for s in lib.gate(studies, EXPLICIT, TODAY).studies}
    assert decisions == {"1.1": "releasable", "1.2": "releasable", "2.1": "informed", "3.1": "refused",
                         "4.1": "withdrawn", "5.1": "unknown"}


def test_non_opposition_delay_with_injected_clock(studies: Ledger) -> None:
    informed_on = dt.date(2026, 5, 1)
    lib.set_status(studies, "P2", "informed", issuer="CHU", effective=informed_on, today=TODAY)
    lib.set_status(studies, "P1", "consented", issuer="CHU", effective=informed_on, today=TODAY)
    day_29 = informed_on + dt.timedelta(days=29)
    day_30 = informed_on + dt.timedelta(days=30)
    assert lib.releasable_studies(studies, NON_OPPOSITION, day_29) == ["1.1", "1.2"]
    assert not lib.is_releasable(studies, "P2", "CHU", NON_OPPOSITION, day_29)
    assert lib.releasable_studies(studies, NON_OPPOSITION, day_30) == ["1.1", "1.2", "2.1"]
    assert lib.is_releasable(studies, "P2", "CHU", NON_OPPOSITION, day_30)
    assert lib.release_basis(studies, "P2", "CHU", NON_OPPOSITION, day_30) == lib.ReleaseBasis(
        "informed", "2026-05-01", "non-opposition")
    # the same patient under explicit mode: never
    assert not lib.is_releasable(studies, "P2", "CHU", EXPLICIT, day_30 + dt.timedelta(days=999))
    # a zero delay releases on the day of information
    assert lib.is_releasable(studies, "P2", "CHU", ConsentPolicy("non-opposition", 0), informed_on)
    # opposition after information stops it
    lib.set_status(studies, "P2", "refused", issuer="CHU", effective=day_30, today=day_30)
    assert not lib.is_releasable(studies, "P2", "CHU", NON_OPPOSITION, day_30 + dt.timedelta(days=99))


def test_a_study_naming_two_patients_needs_both(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU", "9.9"), ("P2", "CHU", "9.9")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == []
    lib.set_status(ledger, "P2", "consented", issuer="CHU", today=TODAY)
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == ["9.9"]


def test_coverage_counts_and_summary(studies: Ledger) -> None:
    lib.set_status(studies, "P1", "consented", issuer="CHU", today=TODAY)
    lib.set_status(studies, "P2", "informed", issuer="CHU", effective=TODAY - dt.timedelta(days=10), today=TODAY)
    lib.set_status(studies, "P3", "refused", issuer="CHU", today=TODAY)
    cov = lib.coverage(studies, NON_OPPOSITION, TODAY)
    assert (cov["eligible_studies"], cov["releasable_studies"], cov["percent"]) == (6, 2, 33)
    assert cov["summary"] == "2 of 6 eligible studies (33%) releasable"
    assert cov["waiting_studies"] == {"informed-in-delay": 1, "refused": 1, "unknown": 2}
    assert cov["waiting_patients"] == {"informed-in-delay": 1, "refused": 1, "unknown": 2}
    assert cov["releasable_on"] == {(TODAY + dt.timedelta(days=20)).isoformat(): 1}
    assert "P1" not in json.dumps(cov) and "CHU" not in json.dumps(cov)


def test_coverage_summary_uses_thousands_separators(ledger: Ledger) -> None:
    add_studies(ledger, [(f"P{i}", "", f"1.{i}") for i in range(1200)], instances=1)
    for i in range(600):
        lib.set_status(ledger, f"P{i}", "consented", today=TODAY)
    assert lib.coverage(ledger, EXPLICIT, TODAY)["summary"] == "600 of 1,200 eligible studies (50%) releasable"


def test_unknown_mode_is_refused(studies: Ledger) -> None:
    with pytest.raises(ConsentError, match="mode"):
        lib.gate(studies, ConsentPolicy("opt-out", 30), TODAY)


def test_withdrawal_after_release_blocks_later_releases_and_queues_one_request(
    studies: Ledger, withdrawer: lib.Withdrawer, signing_key: SigningKey,
) -> None:
    lib.set_status(studies, "P1", "consented", issuer="CHU", today=TODAY)
    assert "1.1" in lib.releasable_studies(studies, EXPLICIT, TODAY)  # released (by the pipeline) here
    change = lib.withdraw(studies, "P1", withdrawer, issuer="CHU", reason="courrier du patient", today=TODAY)
    assert change.outcome == "withdrawn" and change.request_queued
    again = lib.withdraw(studies, "P1", withdrawer, issuer="CHU", today=TODAY)
    assert again.outcome == "already-withdrawn" and not again.request_queued
    # neither a new consent nor any mode or later day lets it through again
    with pytest.raises(ConsentError):
        lib.set_status(studies, "P1", "consented", issuer="CHU", today=TODAY)
    for policy in (EXPLICIT, NON_OPPOSITION, ConsentPolicy("non-opposition", 0)):
        for day in (TODAY, TODAY + dt.timedelta(days=3650)):
            assert not {"1.1", "1.2"} & set(lib.releasable_studies(studies, policy, day))
            assert lib.release_basis(studies, "P1", "CHU", policy, day) is None
    (request,) = lib.withdrawal_requests(studies)
    payload = lib.verify_withdrawal_request(request, PublicKey.of(signing_key))
    pseudonym = test_pseudonym("P1", "CHU")
    assert payload["pseudonym"] == request.pseudonym == pseudonym
    assert payload["site"] == "TEST01" and payload["type"] == "sfr-gateway/withdrawal-request"
    assert set(payload) == {"type", "version", "site", "pseudonym", "request_id", "created_at"}
    for phi in ("P1", "CHU", "courrier"):
        assert phi not in request.payload.replace(pseudonym, "")
    tampered = request.__class__(**{**request.__dict__, "payload": request.payload.replace("TEST01\"", "OTHER\"")})
    with pytest.raises(ConsentError, match="does not verify"):
        lib.verify_withdrawal_request(tampered, PublicKey.of(signing_key))


def test_withdrawal_cancels_pending_batches(studies: Ledger, withdrawer: lib.Withdrawer) -> None:
    from sfr_gateway.ledger.batches import begin_batch

    with studies.transaction() as conn:
        for n, (study, state) in enumerate([("1.1", "packaged"), ("1.2", "failed"), ("1.1", "acknowledged"),
                                             ("2.1", "packaged"), ("1.2", "packaging")]):
            begin_batch(conn, batch_id=f"B{n}", study_uid=study, patient_id="x", issuer="", pseudonym="S-x",
                        new_study_uid="2.25.1", part=n, consent_status="consented", consent_date="2026-01-01")
            conn.execute("UPDATE batches SET state = ? WHERE batch_id = ?", (state, f"B{n}"))
    change = lib.withdraw(studies, "P1", withdrawer, issuer="CHU", today=TODAY)
    assert change.batches_cancelled == 3
    states = studies.conn.execute("SELECT study_uid, state FROM batches ORDER BY batch_id").fetchall()
    assert states == [("1.1", "cancelled"), ("1.2", "cancelled"), ("1.1", "acknowledged"), ("2.1", "packaged"),
                      ("1.2", "cancelled")]


def test_release_basis_inside_the_batch_transaction(studies: Ledger) -> None:
    lib.set_status(studies, "P1", "consented", issuer="CHU", effective=dt.date(2026, 4, 2), today=TODAY)
    with studies.transaction() as conn:
        basis = lib.release_basis(conn, "P1", "CHU", EXPLICIT, TODAY)
    assert basis == lib.ReleaseBasis("consented", "2026-04-02", "explicit")


def test_patients_list_includes_those_waiting_without_any_record(studies: Ledger) -> None:
    lib.set_status(studies, "P1", "consented", issuer="CHU", today=TODAY)
    lib.set_status(studies, "P9", "refused", issuer="CHU", today=TODAY)  # no study indexed (yet)
    rows = {p.patient_id: p for p in lib.list_patients(studies)}
    assert set(rows) == {"P1", "P2", "P3", "P4", "P5", "P9"}
    assert (rows["P1"].status, rows["P1"].eligible_studies, rows["P1"].records) == ("consented", 2, 1)
    assert (rows["P5"].status, rows["P5"].records) == ("unknown", 0)
    assert [p.patient_id for p in lib.list_patients(studies, "refused")] == ["P9"]


@pytest.mark.tool("minisign")
def test_withdrawal_request_verifies_with_stock_minisign(
    ledger: Ledger, withdrawer: lib.Withdrawer, signing_key: SigningKey, tmp_path: Path,
) -> None:
    lib.withdraw(ledger, "P1", withdrawer, today=TODAY)
    (request,) = lib.withdrawal_requests(ledger)
    (tmp_path / "request.json").write_text(request.payload, encoding="utf-8")
    (tmp_path / "request.json.minisig").write_text(request.signature, encoding="utf-8")
    (tmp_path / "site.pub").write_text(signing_key.minisign_public(), encoding="utf-8")
    res = subprocess.run(["minisign", "-V", "-p", tmp_path / "site.pub", "-m", tmp_path / "request.json"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "withdrawal-request" in res.stdout and "site:TEST01" in res.stdout
    (tmp_path / "request.json").write_text(request.payload.replace("TEST01", "TEST02"), encoding="utf-8")
    res = subprocess.run(["minisign", "-V", "-p", tmp_path / "site.pub", "-m", tmp_path / "request.json"],
                         capture_output=True, text=True, check=False)
    assert res.returncode != 0
