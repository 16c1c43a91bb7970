"""The identity rules of ``consent.identity.Registry`` one by one, on in-memory registries (issue 21:
the survivors of the mutation campaign over the consent gate). What each record applies to, what
coverage counts as unresolved, and what an operator is told, for the cases the end-to-end tests
in test_consent_identity.py do not separate."""

from __future__ import annotations

from consent_fixtures import TODAY, add_studies, ledger_fixture  # noqa: F401

from sfr_gateway.consent import registry as lib
from sfr_gateway.consent.identity import SCOPE_ALL, SCOPE_ISSUER, Registry
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import Ledger
from sfr_gateway.ledger.consent import Record

EXPLICIT = ConsentPolicy("explicit", 30)


def record(n: int, pid: str, issuer: str, status: str, scope: str = "", effective: str = "2026-01-01") -> Record:
    return Record(n, pid, issuer, status, effective, f"{effective}T00:00:00", "test", "", "", "", scope)


def registry(records: list[Record], index: dict[str, set[str]], withdrawals: list[tuple[str, str, str]] = (),
             site: tuple[str, ...] = ("CHU",)) -> Registry:
    return Registry(records, list(withdrawals), index, site)


def test_a_restriction_without_scope_gets_one_from_the_site_issuers() -> None:
    """A refusal being recorded (no scope yet) without issuer, or under an issuer the site does
    not use, covers every issuer; under a site issuer, that identity only."""
    reg = registry([], {"P1": {"CHU", "CLINIQUE"}})
    for issuer in ("", "ELSEWHERE"):
        res = reg.resolve("P1", issuer, "refused")
        assert res.outcome == "all-issuers"
        assert sorted(res.identities) == [("P1", "CHU"), ("P1", "CLINIQUE")]
    res = reg.resolve("P1", "CHU", "refused")
    assert (res.outcome, res.identities, res.scanned) == ("identity", (("P1", "CHU"),), True)
    # a scope kept with the record wins over today's site issuers
    assert reg.resolve("P1", "CHU", "withdrawn", SCOPE_ALL).outcome == "all-issuers"
    assert reg.resolve("P1", "ELSEWHERE", "withdrawn", SCOPE_ISSUER).outcome == "identity"


def test_a_restriction_under_a_site_issuer_not_scanned_yet_says_so() -> None:
    reg = registry([], {"P1": {"CLINIQUE"}})
    res = reg.resolve("P1", "CHU", "refused")
    assert (res.outcome, res.scanned, res.unresolved) == ("identity", False, True)
    assert res.describe() == "applies to issuer 'CHU' (no scanned study holds it yet)"


def test_outcomes_of_the_other_records() -> None:
    reg = registry([], {"P1": {"CHU"}, "P2": {"CHU", "CLINIQUE"}})
    assert reg.resolve("P1", "CHU", "consented").outcome == "identity"
    assert not reg.resolve("P1", "CHU", "consented").unresolved
    mismatch = reg.resolve("P1", "CLINIQUE", "consented")
    assert (mismatch.outcome, mismatch.scanned, mismatch.elsewhere) == ("no-match-yet", False, ("CHU",))
    assert mismatch.unresolved
    assert mismatch.describe("P1") == (
        "applies to P1 issuer 'CLINIQUE'; NOT APPLIED to any scanned study: the exports hold this Patient ID "
        "under issuer 'CHU' (pass --issuer to match them, or record it without an issuer)")
    nothing = reg.resolve("P9", "", "consented")
    assert (nothing.outcome, nothing.identities, nothing.scanned, nothing.unresolved) == (
        "no-match-yet", (("P9", ""),), False, True)
    assert reg.resolve("P2", "", "consented").outcome == "ambiguous"


def test_identities_of_a_patient_id_are_every_issuer_known_anywhere() -> None:
    reg = Registry([record(1, "P1", "REGISTRY", "consented")], [], {"P1": {"CHU"}}, ("CHU",), declared=("DECLARED",))
    assert reg.identities_of("P1") == [("P1", "CHU"), ("P1", "DECLARED"), ("P1", "REGISTRY")]
    assert reg.restriction_targets("P1", "ELSEWHERE", SCOPE_ALL) == [
        ("P1", "CHU"), ("P1", "DECLARED"), ("P1", "ELSEWHERE"), ("P1", "REGISTRY")]
    assert reg.restriction_targets("P1", "CHU", SCOPE_ISSUER) == [("P1", "CHU")]


def test_a_withdrawal_under_a_site_issuer_holds_that_identity() -> None:
    reg = registry([record(1, "P1", "CHU", "consented"), record(2, "P1", "CLINIQUE", "consented")],
                   {"P1": {"CHU", "CLINIQUE"}}, withdrawals=[("P1", "CHU", SCOPE_ISSUER)])
    assert reg.standing("P1", "CHU").status == "withdrawn"
    assert reg.standing("P1", "CLINIQUE").status == "consented"
    everywhere = registry([record(1, "P1", "CHU", "consented")], {"P1": {"CHU"}}, withdrawals=[("P1", "", SCOPE_ALL)])
    assert everywhere.standing("P1", "CHU").withdrawn


def test_an_ambiguous_consent_without_issuer_releases_no_identity_not_even_the_one_without_issuer(
        ledger: Ledger) -> None:
    """The exports hold P1 without issuer and under CHU: a consent recorded without issuer is
    ambiguous and applies to neither, although it was recorded under the same (empty) issuer as
    the first identity. The registry entry itself still shows its own record (``entry``)."""
    add_studies(ledger, [("P1", "", "11.1"), ("P1", "CHU", "11.2")])
    lib.set_status(ledger, "P1", "consented", today=TODAY)
    assert lib.releasable_studies(ledger, EXPLICIT, TODAY) == []
    assert {s.study_uid: s.decision for s in lib.gate(ledger, EXPLICIT, TODAY).studies} == {
        "11.1": "unknown", "11.2": "unknown"}
    assert lib.current_status(ledger, "P1") == "consented"


def test_pull_asks_for_every_releasable_identity_of_a_patient(ledger: Ledger) -> None:
    """A later record under an issuer the exports do not hold does not hide the identities the
    index holds: ``releasable_identities`` lists both that are releasable."""
    add_studies(ledger, [("P1", "CHU", "12.1")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU", today=TODAY)
    lib.set_status(ledger, "P1", "consented", issuer="OTHER", today=TODAY)
    assert lib.releasable_identities(ledger, EXPLICIT, TODAY) == [("P1", "CHU"), ("P1", "OTHER")]
