"""Mapping lookups both ways, encryption at rest, the audit trail of lookups (no values)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from mapping_fixtures import pipeline_record

from sfr_gateway.errors import MappingError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.ledger import mapping as sql
from sfr_gateway.ledger import open_ledger
from sfr_gateway.mapping.derive import MappingEntry
from sfr_gateway.mapping.lookup import lookup
from sfr_gateway.mapping.store import MappingStore
from sfr_gateway.sample import SampleExport


@pytest.fixture
def recorded(home: Path, export_copy: Path) -> dict[str, tuple]:
    return pipeline_record(home, export_copy)


def _patient_of(sample: SampleExport, study_uid: str):
    return next(p for p in sample.patients if study_uid in p.study_uids)


def test_lookup_both_ways(home: Path, recorded: dict[str, tuple], sample_export: SampleExport, cli) -> None:
    assert len(recorded) >= 3
    study_uid, (pseudonym, new_uid, new_acc, offset) = min(recorded.items())
    patient = _patient_of(sample_export, study_uid)

    r = cli("--home", home, "mapping", "lookup", pseudonym, "--json")
    assert r.exit_code == 0, r.stderr
    [match] = json.loads(r.stdout)["matches"]
    assert (match["patient_id"], match["issuer"], match["date_offset"]) == (patient.patient_id, patient.issuer, offset)
    assert match["current_secret"] is True
    mine = [s for s in match["studies"] if s["study_uid"] == study_uid]
    assert mine == [{"study_uid": study_uid, "new_study_uid": new_uid, "new_accession": new_acc,
                     "accession": patient.accession_numbers[patient.study_uids.index(study_uid)]}]
    # every recorded study of that patient is there, and no other patient's
    assert {s["study_uid"] for s in match["studies"]} == {u for u, f in recorded.items() if f[0] == pseudonym}

    r = cli("--home", home, "mapping", "lookup", "--patient-id", patient.patient_id, "--issuer", patient.issuer,
            "--json")
    assert r.exit_code == 0, r.stderr
    assert [m["pseudonym"] for m in json.loads(r.stdout)["matches"]] == [pseudonym]
    r = cli("--home", home, "mapping", "lookup", "--patient-id", patient.patient_id)
    assert r.exit_code == 0 and pseudonym in r.stdout and new_uid in r.stdout
    r = cli("--home", home, "mapping", "lookup", "--patient-id", patient.patient_id, "--issuer", "OTHER", "--json")
    assert json.loads(r.stdout)["matches"] == []
    r = cli("--home", home, "mapping", "lookup", "TEST01-AAAAAAAAAAAA")
    assert r.exit_code == 0 and "no match" in r.stdout
    r = cli("--home", home, "mapping", "lookup")
    assert r.exit_code == 2


def test_mapping_is_encrypted_at_rest(home: Path, recorded: dict[str, tuple], sample_export: SampleExport) -> None:
    paths = HomePaths(home)
    assert stat.S_IMODE(paths.mapping_key.stat().st_mode) == 0o600
    with open_ledger(paths.state_db) as ledger:
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = list(sql.all_rows(ledger))
    assert len(rows) == len(recorded)
    blob = b"".join(r.sealed + r.study_ref + r.patient_ref + r.pid_ref + r.pseudonym_ref for r in rows)
    for study_uid, (pseudonym, new_uid, _, _) in recorded.items():
        patient = _patient_of(sample_export, study_uid)
        for value in (patient.patient_id, study_uid, pseudonym, new_uid, *patient.accession_numbers):
            assert value.encode() not in blob
    # accession numbers are not in the scan index: in state.db they exist only inside sealed rows
    db = paths.state_db.read_bytes()
    for p in sample_export.patients:
        for acc in p.accession_numbers:
            assert acc.encode() not in db


def test_sealed_rows_are_bound_to_their_row(home: Path, recorded: dict[str, tuple]) -> None:
    paths = HomePaths(home)
    with open_ledger(paths.state_db) as ledger:
        a, b = list(sql.all_rows(ledger))[:2]
        ledger.conn.execute("UPDATE mapping_studies SET sealed = ? WHERE study_ref = ?", (b.sealed, a.study_ref))
        store = MappingStore.open(ledger, paths)
        with pytest.raises(MappingError, match="does not decrypt"):
            list(store.entries())


def test_recording_another_pseudonym_for_a_mapped_study_is_refused(home: Path, recorded: dict[str, tuple]) -> None:
    paths = HomePaths(home)
    study_uid, (pseudonym, new_uid, _, offset) = min(recorded.items())
    with open_ledger(paths.state_db) as ledger:
        store = MappingStore.open(ledger, paths)
        entry = next(s.entry for s in store.entries() if s.entry.study_uid == study_uid)
        # the same entry again (without its accession): idempotent
        store.record([MappingEntry(pseudonym=pseudonym, patient_id=entry.patient_id, issuer=entry.issuer,
                                   study_uid=study_uid, new_study_uid=new_uid, date_offset=offset)])
        assert sql.count_rows(ledger) == len(recorded)
        kept = next(s.entry for s in store.entries() if s.entry.study_uid == study_uid)
        assert kept.accession == entry.accession  # an empty accession does not erase the known one
        with pytest.raises(MappingError, match=f"already mapped to pseudonym {pseudonym}"):
            store.record([MappingEntry(pseudonym="TEST01-ZZZZZZZZZZZZ", patient_id=entry.patient_id,
                                       issuer=entry.issuer, study_uid=study_uid, new_study_uid=new_uid,
                                       date_offset=offset)])


def test_lookups_leave_events_and_no_values(home: Path, recorded: dict[str, tuple], sample_export: SampleExport,
                                            cli, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    study_uid, (pseudonym, *_rest) = min(recorded.items())
    patient = _patient_of(sample_export, study_uid)
    outputs = [
        cli("--home", home, "-vv", "mapping", "lookup", pseudonym),
        cli("--home", home, "-vv", "mapping", "lookup", "--patient-id", patient.patient_id, "--issuer", patient.issuer),
        cli("--home", home, "-vv", "mapping", "lookup", "--patient-id", "NOBODY-123"),
    ]
    assert all(o.exit_code == 0 for o in outputs)
    with open_ledger(HomePaths(home).state_db) as ledger:
        events = [e for e in ledger.events(50) if e["command"] == "mapping lookup"]
    assert [(e["result"], e["detail"]["by"]) for e in reversed(events)] == [
        ("found", "pseudonym"), ("found", "patient-id+issuer"), ("not-found", "patient-id")]
    assert all(e["actor"] and e["ts"] for e in events)
    trail = json.dumps(events) + caplog.text + "".join(o.stderr for o in outputs)
    for value in (pseudonym, patient.patient_id, patient.issuer, "NOBODY-123", study_uid, patient.family,
                  *patient.accession_numbers):
        assert value not in trail
    # the lookup with a value really printed it on stdout (the test would catch a silent no-op)
    assert patient.patient_id in outputs[0].stdout


def test_library_lookup_needs_exactly_one_key(home: Path) -> None:
    paths = HomePaths(home)
    with open_ledger(paths.state_db) as ledger, pytest.raises(ValueError):
        lookup(ledger, paths, pseudonym="X", patient_id="Y")
