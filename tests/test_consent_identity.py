"""One patient identity (issue 14): what a consent record applies to, on real SQLite ledgers.

A record is (Patient ID, issuer as recorded); the exports' patients are (Patient ID, Issuer of
Patient ID) identities. Refusals and withdrawals without an issuer (or under one the exports do
not use) cover every issuer; a consent without an issuer applies only when it resolves to one
identity, and never silently does nothing.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
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
from sfr_gateway.consent.identity import Registry
from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.crypto.signkey import SigningKey
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import Ledger, open_ledger
from sfr_gateway.ledger.batches import begin_batch
from sfr_gateway.ledger.db import _statements, migrations

EXPLICIT = ConsentPolicy("explicit", 30)
D1 = dt.date(2026, 1, 10)
D2 = dt.date(2026, 2, 10)


def released(ledger: Ledger, batch_id: str, study: str, pid: str, issuer: str, pseudonym: str,
             state: str = "acknowledged", created_at: str | None = None) -> None:
    """A batch of the identity, as the release pipeline records it (then delivered)."""
    with ledger.transaction() as conn:
        begin_batch(conn, batch_id=batch_id, study_uid=study, patient_id=pid, issuer=issuer, pseudonym=pseudonym,
                    new_study_uid="2.25.9", part=1, consent_status="consented", consent_date="2026-01-01")
        conn.execute("UPDATE batches SET state = ?, acknowledged_at = CASE WHEN ? = 'acknowledged' THEN ? END "
                     "WHERE batch_id = ?", (state, state, "2026-06-01T00:00:00+00:00", batch_id))
        if created_at:
            conn.execute("UPDATE batches SET created_at = ? WHERE batch_id = ?", (created_at, batch_id))


def releasable(ledger: Ledger, policy: ConsentPolicy = EXPLICIT) -> list[str]:
    return lib.releasable_studies(ledger, policy, TODAY)


# --- restrictions: every issuer ------------------------------------------------------------------


def test_withdrawal_without_issuer_blocks_every_issuer_and_names_the_released_pseudonym(
    ledger: Ledger, withdrawer: lib.Withdrawer, signing_key: SigningKey,
) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-B", "1.2"), ("P2", "CHU-A", "2.1")])
    for issuer in ("CHU-A", "CHU-B"):
        lib.set_status(ledger, "P1", "consented", issuer=issuer, effective=D1, today=TODAY)
    lib.set_status(ledger, "P2", "consented", issuer="CHU-A", effective=D1, today=TODAY)
    assert releasable(ledger) == ["1.1", "1.2", "2.1"]
    released(ledger, "B-A", "1.1", "P1", "CHU-A", test_pseudonym("P1", "CHU-A"))
    released(ledger, "B-B", "1.2", "P1", "CHU-B", test_pseudonym("P1", "CHU-B"), state="packaged")
    change = lib.withdraw(ledger, "P1", withdrawer, today=TODAY)  # no issuer
    assert change.outcome == "withdrawn" and change.resolution is not None
    assert change.resolution.outcome == "all-issuers"
    assert set(change.resolution.identities) == {("P1", "CHU-A"), ("P1", "CHU-B")}
    assert releasable(ledger) == ["2.1"]
    assert change.batches_cancelled == 1 and change.released_batches == ("B-A",) and change.released_studies == 1
    requests = {r.pseudonym: r for r in lib.withdrawal_requests(ledger)}
    # every identity's pseudonym, including the one actually released (under CHU-A)
    assert set(requests) == {test_pseudonym("P1", i) for i in ("", "CHU-A", "CHU-B")}
    for request in requests.values():
        payload = lib.verify_withdrawal_request(request, PublicKey.of(signing_key))
        assert payload["pseudonym"] == request.pseudonym
    assert lib.current_status(ledger, "P1", "CHU-A") == "withdrawn"
    # permanent for every identity of the ID
    with pytest.raises(lib.ConsentError, match="permanent"):
        lib.set_status(ledger, "P1", "consented", issuer="CHU-B", today=TODAY)


def test_refusal_without_issuer_blocks_every_issuer_until_a_later_consent(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-B", "1.2")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", effective=D1, today=TODAY)
    lib.set_status(ledger, "P1", "consented", issuer="CHU-B", effective=D1, today=TODAY)
    lib.set_status(ledger, "P1", "refused", effective=D2, today=TODAY)
    assert releasable(ledger) == []
    cov = lib.coverage(ledger, EXPLICIT, TODAY)
    assert cov["waiting_studies"] == {"refused": 2}
    # a later explicit consent for one identity lifts it there only
    lib.set_status(ledger, "P1", "consented", issuer="CHU-B", effective=TODAY, today=TODAY)
    assert releasable(ledger) == ["1.2"]
    # an old consent recorded later does not override the newer refusal
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", effective=D1, today=TODAY, reference="old sheet")
    assert releasable(ledger) == ["1.2"]


def test_restriction_under_an_issuer_the_exports_do_not_use_covers_every_issuer_for_good(
    ledger: Ledger, withdrawer: lib.Withdrawer,
) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", today=TODAY)
    lib.set_status(ledger, "P1", "refused", issuer="TYPO", today=TODAY)
    assert releasable(ledger) == []
    # the scope was decided when recorded: a later export that uses TYPO does not narrow it
    add_studies(ledger, [("P9", "TYPO", "9.1")])
    assert releasable(ledger) == []
    (rec,) = [r for r in lib.history(ledger, "P1", "TYPO")]
    assert rec.scope == "all-issuers"


def test_restriction_under_a_site_issuer_covers_that_identity_only(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-B", "1.2")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", today=TODAY)
    lib.set_status(ledger, "P1", "consented", issuer="CHU-B", today=TODAY)
    change = lib.withdraw(ledger, "P1", withdrawer, issuer="CHU-A", today=TODAY)
    assert change.resolution is not None and change.resolution.identities == (("P1", "CHU-A"),)
    assert releasable(ledger) == ["1.2"]
    assert [r.pseudonym for r in lib.withdrawal_requests(ledger)] == [test_pseudonym("P1", "CHU-A")]
    # a declared issuer not yet in the index counts as used by the exports
    lib.set_status(ledger, "P2", "refused", issuer="CHU-C", today=TODAY, issuers=("CHU-C",))
    assert lib.history(ledger, "P2", "CHU-C")[0].scope == "issuer"


# --- consent without issuer: resolved, ambiguous, no match yet -----------------------------------


def test_consent_without_issuer_resolves_to_the_single_issuer_of_the_index(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-A", "1.2")])
    change = lib.set_status(ledger, "P1", "consented", today=TODAY)
    assert change.resolution is not None and change.resolution.outcome == "resolved"
    assert change.resolution.identities == (("P1", "CHU-A"),) and not change.resolution.unresolved
    assert releasable(ledger) == ["1.1", "1.2"]
    basis = lib.release_basis(ledger, "P1", "CHU-A", EXPLICIT, TODAY)
    assert basis is not None and basis.status == "consented"
    # a scan that finds the ID under a second issuer makes it ambiguous: it stops applying
    add_studies(ledger, [("P1", "CHU-B", "1.3")])
    assert releasable(ledger) == []
    cov = lib.coverage(ledger, EXPLICIT, TODAY)
    assert cov["unresolved_records"] == {"ambiguous": 1}
    assert lib.show(ledger, "P1", None, EXPLICIT, TODAY)["releasable"] is False


def test_ambiguous_consent_is_not_applied_and_says_so(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-B", "1.2")])
    change = lib.set_status(ledger, "P1", "consented", today=TODAY)
    assert change.resolution is not None and change.resolution.outcome == "ambiguous"
    assert change.resolution.issuers == ("CHU-A", "CHU-B") and "NOT APPLIED" in change.resolution.describe()
    assert releasable(ledger) == []
    assert lib.coverage(ledger, EXPLICIT, TODAY)["unresolved_records"] == {"ambiguous": 1}
    shown = lib.show(ledger, "P1", None, EXPLICIT, TODAY)
    assert shown["releasable"] is False
    assert {(i["issuer"], i["status"], i["releasable"]) for i in shown["identities"]} == {
        ("CHU-A", "unknown", False), ("CHU-B", "unknown", False)}
    assert shown["history"][0]["applies_to"]["outcome"] == "ambiguous"
    # recording each identity settles it
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", today=TODAY)
    assert lib.coverage(ledger, EXPLICIT, TODAY)["unresolved_records"] == {"ambiguous": 1}
    lib.set_status(ledger, "P1", "refused", issuer="CHU-B", today=TODAY)
    assert lib.coverage(ledger, EXPLICIT, TODAY)["unresolved_records"] == {}
    assert releasable(ledger) == ["1.1"]


def test_no_match_yet_is_counted_then_applies_when_scanned(ledger: Ledger) -> None:
    change = lib.set_status(ledger, "P1", "consented", today=TODAY)
    assert change.resolution is not None and change.resolution.outcome == "no-match-yet"
    assert lib.coverage(ledger, EXPLICIT, TODAY)["unresolved_records"] == {"no-match-yet": 1}
    add_studies(ledger, [("P1", "CHU-A", "1.1")])
    assert releasable(ledger) == ["1.1"]
    assert lib.coverage(ledger, EXPLICIT, TODAY)["unresolved_records"] == {}


def test_declared_issuers_resolve_before_the_first_scan_and_keep_others_out(ledger: Ledger) -> None:
    site = ConsentPolicy("explicit", 30, issuers=("CHU-A",))
    change = lib.set_status(ledger, "P1", "consented", today=TODAY, issuers=site.issuers)
    assert change.resolution is not None and change.resolution.outcome == "resolved"
    assert change.resolution.identities == (("P1", "CHU-A"),)
    shown = lib.show(ledger, "P1", None, site, TODAY)
    assert [(i["issuer"], i["status"], i["scanned"]) for i in shown["identities"]] == [("CHU-A", "consented", False)]
    # the ID appears under CHU-A and under an issuer the site did not declare (external images)
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "EXTERNE", "1.2")])
    assert releasable(ledger, site) == ["1.1"]
    # without the declaration the same record would be ambiguous
    assert releasable(ledger, EXPLICIT) == []


def test_two_declared_issuers_need_the_index_to_tell(ledger: Ledger) -> None:
    site = ConsentPolicy("explicit", 30, issuers=("CHU-A", "CHU-B"))
    lib.set_status(ledger, "P1", "consented", today=TODAY, issuers=site.issuers)
    lib.set_status(ledger, "P2", "consented", today=TODAY, issuers=site.issuers)
    add_studies(ledger, [("P1", "CHU-B", "1.1"), ("P2", "CHU-A", "2.1"), ("P2", "CHU-B", "2.2")])
    assert releasable(ledger, site) == ["1.1"]
    assert lib.coverage(ledger, site, TODAY)["unresolved_records"] == {"ambiguous": 1}


# --- late refusal, repeated releases --------------------------------------------------------------


def test_refusal_after_release_reports_the_batches_and_queues_the_request(
    ledger: Ledger, withdrawer: lib.Withdrawer,
) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P1", "CHU-A", "1.2"), ("P2", "CHU-A", "2.1")])
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", effective=D1, today=TODAY)
    released(ledger, "B1", "1.1", "P1", "CHU-A", test_pseudonym("P1", "CHU-A"))
    released(ledger, "B2", "1.2", "P1", "CHU-A", test_pseudonym("P1", "CHU-A"))
    released(ledger, "B3", "1.2", "P1", "CHU-A", test_pseudonym("P1", "CHU-A"), state="packaged")
    with pytest.raises(lib.ConsentError, match="already left"):  # the request needs the keys
        lib.set_status(ledger, "P1", "refused", today=TODAY)
    # an old refusal (older than the consent) re-imported changes nothing: no request
    stale = lib.set_status(ledger, "P1", "refused", effective=D1 - dt.timedelta(days=5), today=TODAY,
                           withdrawer=withdrawer)
    assert stale.outcome == "recorded" and stale.requests_queued == 0 and stale.released_batches == ()
    assert lib.withdrawal_requests(ledger) == []
    change = lib.set_status(ledger, "P1", "refused", today=TODAY, withdrawer=withdrawer)
    assert change.outcome == "recorded" and change.released_batches == ("B1", "B2")
    assert change.released_studies == 2 and change.requests_queued >= 1
    assert test_pseudonym("P1", "CHU-A") in {r.pseudonym for r in lib.withdrawal_requests(ledger)}
    # a refusal with nothing released queues nothing
    quiet = lib.set_status(ledger, "P2", "refused", issuer="CHU-A", today=TODAY, withdrawer=withdrawer)
    assert quiet.released_batches == () and quiet.requests_queued == 0
    assert [r.pseudonym for r in lib.withdrawal_requests(ledger)].count(test_pseudonym("P2", "CHU-A")) == 0


def test_released_again_after_a_request_gets_a_new_request(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1")])
    pseudonym = test_pseudonym("P1", "CHU-A")
    released(ledger, "B1", "1.1", "P1", "CHU-A", pseudonym, created_at="2026-01-01T00:00:00+00:00")
    lib.set_status(ledger, "P1", "refused", issuer="CHU-A", effective=D1, today=TODAY, withdrawer=withdrawer)
    assert [r.pseudonym for r in lib.withdrawal_requests(ledger)] == [pseudonym]
    lib.set_status(ledger, "P1", "consented", issuer="CHU-A", effective=D2, today=TODAY)
    (first,) = lib.withdrawal_requests(ledger)
    # released again (not before the request: in the same second counts as after)
    released(ledger, "B2", "1.1", "P1", "CHU-A", pseudonym, created_at=first.created_at)
    time.sleep(1.1)  # timestamps have seconds: the next request is strictly after B2
    lib.withdraw(ledger, "P1", withdrawer, issuer="CHU-A", today=TODAY)
    assert [r.pseudonym for r in lib.withdrawal_requests(ledger)] == [pseudonym, pseudonym]
    assert lib.withdraw(ledger, "P1", withdrawer, today=TODAY).outcome == "withdrawn"  # every issuer now
    assert [r.pseudonym for r in lib.withdrawal_requests(ledger)].count(pseudonym) == 2  # nothing new for it


# --- list and show ----------------------------------------------------------------------------------


def test_list_shows_what_each_entry_resolves_to(ledger: Ledger) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P2", "CHU-A", "2.1"), ("P2", "CHU-B", "2.2")])
    lib.set_status(ledger, "P1", "consented", today=TODAY)
    lib.set_status(ledger, "P2", "consented", today=TODAY)
    lib.set_status(ledger, "P3", "consented", today=TODAY)
    rows = {(r.patient_id, r.issuer): r for r in lib.list_patients(ledger, policy=EXPLICIT, today=TODAY)}
    assert rows[("P1", "")].applies_to["identities"] == [{"patient_id": "P1", "issuer": "CHU-A"}]
    assert rows[("P1", "CHU-A")].status == "consented" and rows[("P1", "CHU-A")].releasable
    assert rows[("P1", "CHU-A")].records == 0  # applies through the entry without issuer
    assert rows[("P2", "")].applies_to["outcome"] == "ambiguous" and not rows[("P2", "")].releasable
    assert rows[("P2", "CHU-A")].status == "unknown" and not rows[("P2", "CHU-A")].releasable
    assert rows[("P3", "")].applies_to["outcome"] == "no-match-yet"


def test_show_by_identity_lists_the_records_that_apply_to_it(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    add_studies(ledger, [("P1", "CHU-A", "1.1")])
    lib.set_status(ledger, "P1", "consented", effective=D1, today=TODAY)
    lib.set_status(ledger, "P1", "informed", issuer="OTHER", effective=D1, today=TODAY)
    shown = lib.show(ledger, "P1", "CHU-A", EXPLICIT, TODAY)
    assert shown["status"] == "consented" and shown["releasable"] is True
    assert [(h["issuer"], h["status"]) for h in shown["history"]] == [("", "consented")]
    lib.withdraw(ledger, "P1", withdrawer, today=TODAY)
    shown = lib.show(ledger, "P1", "CHU-A", EXPLICIT, TODAY)
    assert shown["status"] == "withdrawn" and shown["releasable"] is False


# --- the ledger migration -----------------------------------------------------------------------------


def test_migration_gives_old_restrictions_a_scope(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _, sql in migrations()[:5]:
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO instances (path, size, mtime_ns, state, patient_id, issuer, study_uid) "
                 "VALUES (x'01', 1, 1, 'indexed', 'P1', 'CHU-A', '1.1')")
    for pid, issuer, status in (("P1", "CHU-A", "refused"), ("P1", "", "refused"), ("P2", "GONE", "withdrawn"),
                                ("P3", "CHU-A", "consented")):
        conn.execute("INSERT INTO consent_records (patient_id, issuer, status, effective, recorded_at) "
                     "VALUES (?, ?, ?, '2026-01-01', '2026-01-01T00:00:00+00:00')", (pid, issuer, status))
    conn.execute("INSERT INTO withdrawal_requests (pseudonym, created_at, payload, signature, signature_format) "
                 "VALUES ('S-1', '2026-01-01', '{}', 'sig', 'minisign')")
    conn.close()
    with open_ledger(path) as ledger:
        scopes = ledger.conn.execute("SELECT patient_id, issuer, scope FROM consent_records ORDER BY id").fetchall()
        assert scopes == [("P1", "CHU-A", "issuer"), ("P1", "", "all-issuers"), ("P2", "GONE", "all-issuers"),
                          ("P3", "CHU-A", "")]
        (request,) = lib.withdrawal_requests(ledger)
        assert request.pseudonym == "S-1"
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            ledger.conn.execute("UPDATE consent_records SET status = 'consented'")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            ledger.conn.execute("DELETE FROM withdrawal_requests")


def test_registry_is_the_one_place_the_gate_and_show_agree_on(ledger: Ledger) -> None:
    """The gate's decision and `show` come from the same Registry: they cannot disagree."""
    add_studies(ledger, [("P1", "CHU-A", "1.1"), ("P2", "CHU-A", "2.1"), ("P2", "", "2.2")])
    lib.set_status(ledger, "P1", "consented", today=TODAY)
    lib.set_status(ledger, "P2", "consented", today=TODAY)
    gate = lib.gate(ledger, EXPLICIT, TODAY)
    with ledger.snapshot() as conn:
        reg = Registry.load(conn)
    for study in gate.studies:
        shown = lib.show(ledger, study.patient_id or "", study.issuer, EXPLICIT, TODAY)
        assert shown["releasable"] == (study.decision == "releasable"), study
        assert reg.standing(study.patient_id or "", study.issuer).status == study.status


def test_releasable_identities_follow_the_same_rule_for_pull(ledger: Ledger) -> None:
    """What `pull` asks the PACS for: the identities the records resolve to, scanned or not."""
    site = ConsentPolicy("explicit", 30, issuers=("CHU-A",))
    add_studies(ledger, [("P2", "CHU-A", "2.1"), ("P4", "CHU-A", "4.1"), ("P4", "CHU-B", "4.2")])
    lib.set_status(ledger, "P1", "consented", today=TODAY, issuers=site.issuers)  # nothing scanned
    lib.set_status(ledger, "P2", "consented", today=TODAY, issuers=site.issuers)
    lib.set_status(ledger, "P3", "consented", issuer="CHU-A", effective=D1, today=TODAY, issuers=site.issuers)
    lib.set_status(ledger, "P3", "refused", effective=D2, today=TODAY, issuers=site.issuers)  # every issuer
    lib.set_status(ledger, "P4", "consented", issuer="CHU-B", today=TODAY, issuers=site.issuers)
    assert lib.releasable_identities(ledger, site, TODAY) == [("P1", "CHU-A"), ("P2", "CHU-A"), ("P4", "CHU-B")]
    # without the declaration, the consent of P1 stands for P1 without issuer until scanned
    assert ("P1", "") in lib.releasable_identities(ledger, EXPLICIT, TODAY)
