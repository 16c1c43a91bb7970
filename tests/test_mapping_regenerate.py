"""regenerate after loss gives the identical mapping; a changed secret is detected and named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mapping_fixtures import pipeline_record, stored_entries

from sfr_gateway.errors import MappingError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.keys.files import encode_secret, load_pseudonym_secret, secret_fingerprint
from sfr_gateway.ledger import mapping as sql
from sfr_gateway.ledger import open_ledger


@pytest.fixture
def recorded(home: Path, export_copy: Path) -> set[tuple]:
    facts = pipeline_record(home, export_copy)
    entries = stored_entries(home)
    assert len(entries) == len(facts) >= 3
    return entries


def test_regenerate_after_losing_the_mapping_table(home: Path, export_copy: Path, recorded: set[tuple], cli) -> None:
    with open_ledger(HomePaths(home).state_db) as ledger:
        assert sql.delete_all_rows(ledger) == len(recorded)
    assert stored_entries(home) == set()
    r = cli("--home", home, "mapping", "regenerate", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["written"] and report["studies"] == len(recorded)
    assert report["released_checked"] == report["released_ok"] == len(recorded)
    assert stored_entries(home) == recorded
    assert cli("--home", home, "mapping", "verify").exit_code == 0


def test_regenerate_after_losing_the_whole_state_db(home: Path, export_copy: Path, recorded: set[tuple], cli) -> None:
    paths = HomePaths(home)
    for suffix in ("", "-wal", "-shm"):
        Path(str(paths.state_db) + suffix).unlink(missing_ok=True)
    r = cli("--home", home, "mapping", "regenerate", export_copy)
    assert r.exit_code == 0, r.stderr
    assert f"{len(recorded)} studies" in r.stdout
    assert stored_entries(home) == recorded


def test_regenerate_on_an_intact_mapping_changes_nothing(home: Path, recorded: set[tuple], cli) -> None:
    r = cli("--home", home, "mapping", "regenerate", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["unchanged"] == len(recorded)
    assert stored_entries(home) == recorded


def _replace_secret(home: Path) -> tuple[str, str]:
    paths = HomePaths(home)
    old = secret_fingerprint(load_pseudonym_secret(paths))
    paths.pseudonym_key.write_text(encode_secret(bytes(range(32))))
    return old, secret_fingerprint(bytes(range(32)))


def test_changed_secret_is_detected_and_named_by_regenerate(home: Path, export_copy: Path, recorded: set[tuple],
                                                            cli) -> None:
    old_fp, new_fp = _replace_secret(home)
    r = cli("--home", home, "mapping", "regenerate", export_copy)
    assert r.exit_code == MappingError.exit_code == 14
    assert "the pseudonym secret changed" in r.stderr
    assert old_fp in r.stderr and new_fp in r.stderr
    assert "refused to write" in r.stderr
    assert stored_entries(home) == recorded  # nothing written
    with open_ledger(HomePaths(home).state_db) as ledger:
        assert next(e["result"] for e in ledger.events(20) if e["command"] == "mapping regenerate") == "mismatch"


def test_changed_secret_is_detected_from_released_pseudonyms_alone(home: Path, recorded: set[tuple], cli) -> None:
    """The mapping table is lost and the secret replaced: only the released records remain."""
    with open_ledger(HomePaths(home).state_db) as ledger:
        sql.delete_all_rows(ledger)
    old_fp, new_fp = _replace_secret(home)
    r = cli("--home", home, "mapping", "regenerate")
    assert r.exit_code == 14
    assert f"released pseudonym(s) were derived under secret {old_fp}" in r.stderr and new_fp in r.stderr
    assert stored_entries(home) == set()


def test_changed_secret_is_detected_by_verify(home: Path, recorded: set[tuple], cli) -> None:
    old_fp, new_fp = _replace_secret(home)
    r = cli("--home", home, "mapping", "verify")
    assert r.exit_code == 14
    assert "the pseudonym secret changed" in r.stderr and old_fp in r.stderr and new_fp in r.stderr


def test_changed_site_id_is_detected(home: Path, recorded: set[tuple], cli) -> None:
    config = HomePaths(home).config
    config.write_text(config.read_text().replace('id = "TEST01"', 'id = "TEST02"'))
    r = cli("--home", home, "mapping", "regenerate")
    assert r.exit_code == 14
    assert "TEST01 -> TEST02" in r.stderr
    r = cli("--home", home, "mapping", "verify")
    assert r.exit_code == 14 and "pseudonym" in r.stderr


def test_verify_catches_an_altered_entry(home: Path, recorded: set[tuple], cli) -> None:
    from sfr_gateway.mapping.store import MappingEntry, MappingStore

    paths = HomePaths(home)
    with open_ledger(paths.state_db) as ledger:
        store = MappingStore.open(ledger, paths)
        victim = next(iter(store.entries())).entry
        forged = MappingEntry(**{**victim.__dict__, "date_offset": (victim.date_offset or 0) + 1})
        sql.upsert_rows(ledger, [store.seal(forged)])
    r = cli("--home", home, "mapping", "verify", "--json")
    assert r.exit_code == 14
    assert "date_offset" in json.loads(r.stdout)["error"]


def test_verify_flags_released_pseudonyms_missing_from_the_mapping(home: Path, recorded: set[tuple], cli) -> None:
    with open_ledger(HomePaths(home).state_db) as ledger:
        sql.delete_all_rows(ledger)
    r = cli("--home", home, "mapping", "verify")
    assert r.exit_code == 14 and "missing from the mapping" in r.stderr


def test_pseudonym_rotation_keeps_old_pseudonyms_answerable(home: Path, export_copy: Path, recorded: set[tuple],
                                                            cli) -> None:
    old_pseudonym = next(iter(recorded))[0]
    assert cli("--home", home, "keys", "rotate-pseudonym", "--i-understand-linkage-breaks").exit_code == 0
    r = cli("--home", home, "mapping", "regenerate", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["released_rotated"] == len(recorded) and report["stored_other_secret"] == len(recorded)
    after = stored_entries(home)
    assert recorded < after and len(after) == 2 * len(recorded)
    r = cli("--home", home, "mapping", "lookup", old_pseudonym, "--json")
    [match] = json.loads(r.stdout)["matches"]
    assert match["current_secret"] is False
    r = cli("--home", home, "mapping", "lookup", "--patient-id", match["patient_id"], "--json")
    pseudonyms = [m["pseudonym"] for m in json.loads(r.stdout)["matches"]]
    assert len(pseudonyms) == 2 and pseudonyms[1] == old_pseudonym  # current secret first
    assert cli("--home", home, "mapping", "verify").exit_code == 0  # old rows checked with the archived secret


def test_regenerate_all_studies_maps_more_than_eligible(home: Path, export_copy: Path, recorded: set[tuple],
                                                        cli) -> None:
    shutil.rmtree(HomePaths(home).quarantine)  # unrelated folder: regenerate does not need it
    r = cli("--home", home, "mapping", "regenerate", "--all-studies", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["studies"] > len(recorded) and not report["written"]
    assert stored_entries(home) == recorded


def test_the_write_path_records_what_the_engine_produced(home: Path, tmp_path: Path, export_copy: Path,
                                                         recorded: set[tuple]) -> None:
    """The one write path (``record_released``, what `run` and `deidentify` use), given the index's
    identifiers and what each study was released as, gives the engine-derived mapping."""
    from sfr_gateway.home.config import load_config
    from sfr_gateway.mapping.derive import compute
    from sfr_gateway.mapping.store import MappingStore
    from sfr_gateway.mapping.sync import Released, known_derivations, record_released

    paths = HomePaths(home)
    with open_ledger(paths.state_db) as ledger:
        studies = [e[3] for e in recorded]
        sql.delete_all_rows(ledger)
        ledger.conn.execute("DELETE FROM mapping_released")
        store = MappingStore.open(ledger, paths)
        derivations = known_derivations(load_config(home), store)
        index, _ = compute(ledger, derivations[store.secret_fp], eligible_only=False, study_uids=studies)
        released = [Released(e.patient_id, e.issuer, e.study_uid, e.accession, pseudonym, new_study, "B2")
                    for e in index for (pseudonym, _, _, u, new_study, *_rest) in recorded if u == e.study_uid]
        assert record_released(ledger, store, derivations, released, source="pipeline").studies == len(studies)
        assert record_released(ledger, store, derivations, [], source="pipeline").studies == 0
        assert len(sql.released(ledger)) == len(studies)
    assert stored_entries(home) == recorded


def test_lost_mapping_key_needs_discard_then_rebuilds(home: Path, recorded: set[tuple], cli) -> None:
    paths = HomePaths(home)
    paths.mapping_key.unlink()  # a new key is made on first use: old rows are unreadable
    r = cli("--home", home, "mapping", "regenerate")
    assert r.exit_code == 14 and "--discard-unreadable" in r.stderr
    r = cli("--home", home, "mapping", "regenerate", "--discard-unreadable", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["discarded"] == len(recorded)
    assert report["released_ok"] == len(recorded)  # matched by new study UID (old patient refs unreadable)
    assert stored_entries(home) == recorded
