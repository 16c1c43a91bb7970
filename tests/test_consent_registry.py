"""Consent registry: statuses, every transition, append-only history, permanent withdrawal."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3

import pytest
from consent_fixtures import (  # noqa: F401
    TODAY,
    event_details,
    ledger_fixture,
    signing_key_fixture,
    withdrawer_fixture,
)

from sfr_gateway.consent import registry as lib
from sfr_gateway.errors import ConsentError
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import Ledger
from sfr_gateway.ledger.db import _statements, migrations

EXPLICIT = ConsentPolicy("explicit", 30)
D1, D2 = dt.date(2026, 1, 10), dt.date(2026, 2, 10)


@pytest.mark.parametrize(("first", "second"), list(itertools.product(lib.STATUSES, repeat=2)))
def test_every_status_transition(ledger: Ledger, withdrawer: lib.Withdrawer, first: str, second: str) -> None:
    lib.set_status(ledger, "P1", first, effective=D1, today=TODAY, withdrawer=withdrawer)
    assert lib.current_status(ledger, "P1") == first
    if first == "withdrawn" and second != "withdrawn":
        with pytest.raises(ConsentError, match="permanent"):
            lib.set_status(ledger, "P1", second, effective=D2, today=TODAY, withdrawer=withdrawer)
        expected = "withdrawn"
        records = 1
    else:
        change = lib.set_status(ledger, "P1", second, effective=D2, today=TODAY, withdrawer=withdrawer)
        expected = second
        records = 1 if first == second == "withdrawn" else 2
        assert change.outcome == ("already-withdrawn" if first == second == "withdrawn"
                                  else "withdrawn" if second == "withdrawn" else "recorded")
    assert lib.current_status(ledger, "P1") == expected
    assert [r.status for r in lib.history(ledger, "P1")] == [first, second][:records]
    assert lib.is_releasable(ledger, "P1", "", EXPLICIT, TODAY) == (expected == "consented")
    queued = lib.withdrawal_requests(ledger)
    assert len(queued) == (1 if "withdrawn" in (first, second) else 0)


def test_unknown_patient_is_unknown_and_not_releasable(ledger: Ledger) -> None:
    assert lib.current_status(ledger, "NOBODY") == "unknown"
    assert lib.history(ledger, "NOBODY") == []
    assert not lib.is_releasable(ledger, "NOBODY", "", EXPLICIT, TODAY)


def test_issuer_separates_patients(ledger: Ledger) -> None:
    lib.set_status(ledger, "P1", "consented", issuer="HOSP-A", today=TODAY)
    assert lib.current_status(ledger, "P1", "HOSP-A") == "consented"
    assert lib.current_status(ledger, "P1", "HOSP-B") == "unknown"
    assert lib.current_status(ledger, "P1") == "unknown"


def test_latest_effective_date_wins_and_same_day_correction(ledger: Ledger) -> None:
    lib.set_status(ledger, "P1", "refused", effective=D2, today=TODAY)
    # an older consent recorded later (e.g. an old spreadsheet) does not override a newer refusal
    lib.set_status(ledger, "P1", "consented", effective=D1, today=TODAY)
    assert lib.current_status(ledger, "P1") == "refused"
    # a correction on the same effective date: the last recorded wins
    lib.set_status(ledger, "P1", "consented", effective=D2, today=TODAY, reason="correction")
    assert lib.current_status(ledger, "P1") == "consented"
    assert len(lib.history(ledger, "P1")) == 3


def test_setting_the_same_record_again_is_unchanged(ledger: Ledger) -> None:
    assert lib.set_status(ledger, "P1", "informed", effective=D1, today=TODAY).outcome == "recorded"
    assert lib.set_status(ledger, "P1", "informed", effective=D1, today=TODAY).outcome == "unchanged"
    assert len(lib.history(ledger, "P1")) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patient_id": "", "status": "consented"}, "empty patient ID"),
    ({"patient_id": "   ", "status": "consented"}, "empty patient ID"),
    ({"patient_id": "P\x07", "status": "consented"}, "control character"),
    ({"patient_id": "P" * 65, "status": "consented"}, "longer than 64"),
    ({"patient_id": "P1", "status": "maybe"}, "unknown status"),
    ({"patient_id": "P1", "status": "consented", "effective": TODAY + dt.timedelta(days=1)}, "future"),
])
def test_invalid_records_are_refused_and_nothing_is_written(ledger: Ledger, kwargs: dict, message: str) -> None:
    with pytest.raises(ConsentError, match=message) as info:
        lib.set_status(ledger, today=TODAY, **kwargs)
    assert "P" * 65 not in str(info.value)
    assert ledger.conn.execute("SELECT COUNT(*) FROM consent_records").fetchone()[0] == 0


def test_withdrawal_without_pseudonym_function_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ConsentError, match="pseudonym"):
        lib.set_status(ledger, "P1", "withdrawn", today=TODAY)
    assert lib.current_status(ledger, "P1") == "unknown"


def test_history_is_append_only_at_the_sql_level(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    lib.set_status(ledger, "P1", "consented", today=TODAY)
    lib.withdraw(ledger, "P2", withdrawer, today=TODAY)
    for statement in ("UPDATE consent_records SET status = 'refused'",
                      "DELETE FROM consent_records",
                      "DELETE FROM consent_withdrawals",
                      "UPDATE consent_withdrawals SET issuer = 'X'",
                      "UPDATE withdrawal_requests SET pseudonym = 'X'",
                      "UPDATE withdrawal_requests SET payload = '{}'",
                      "DELETE FROM withdrawal_requests"):
        with pytest.raises(sqlite3.IntegrityError):
            ledger.conn.execute(statement)
    assert lib.current_status(ledger, "P1") == "consented"
    assert lib.current_status(ledger, "P2") == "withdrawn"


def test_withdrawal_request_delivery_state(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    lib.withdraw(ledger, "P1", withdrawer, today=TODAY)
    (req,) = lib.withdrawal_requests(ledger)
    lib.mark_withdrawal_request(ledger, req.id, "pending", "connection refused")
    lib.mark_withdrawal_request(ledger, req.id, "sent")
    assert lib.withdrawal_requests(ledger) == []
    lib.mark_withdrawal_request(ledger, req.id, "acknowledged")
    (done,) = lib.withdrawal_requests(ledger, "acknowledged")
    assert done.attempts == 3 and done.sent_at
    with pytest.raises(sqlite3.IntegrityError):
        ledger.conn.execute("UPDATE withdrawal_requests SET state = 'pending'")


def test_events_hold_counts_and_statuses_never_patient_values(ledger: Ledger, withdrawer: lib.Withdrawer) -> None:
    lib.set_status(ledger, "PID-SECRET-1", "consented", issuer="ISSUER-SECRET", reference="REF-SECRET",
                   today=TODAY)
    lib.withdraw(ledger, "PID-SECRET-2", withdrawer, reason="REASON-SECRET", today=TODAY)
    text = event_details(ledger)
    assert '"set"' in text and "withdrawn" in text
    for secret in ("PID-SECRET", "ISSUER-SECRET", "REF-SECRET", "REASON-SECRET"):
        assert secret not in text


def test_migration_splitter_keeps_trigger_bodies_whole() -> None:
    sql = {name: text for _, name, text in migrations()}["0002_consent.sql"]
    statements = _statements(sql)
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 7
    assert all(s.rstrip().endswith("END;") for s in triggers)
    assert _statements("-- only a comment; with a semicolon\nCREATE TABLE t (a TEXT DEFAULT ';');\n-- tail\n") == [
        "-- only a comment; with a semicolon\nCREATE TABLE t (a TEXT DEFAULT ';');"]
