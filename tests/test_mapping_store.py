"""The sealed store on its own: round trips of any text, keyed indexes, key file handling."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfr_gateway.errors import KeyFileError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.ledger import mapping as sql
from sfr_gateway.ledger import open_ledger
from sfr_gateway.mapping.store import MappingEntry, MappingStore, load_mapping_key

_ledgers = itertools.count()
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\\"), min_size=1, max_size=24)


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> HomePaths:
    from sfr_gateway.home.init import init_site

    paths = HomePaths(tmp_path_factory.mktemp("store") / "home")
    init_site(paths, "TEST01")
    return paths


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pid=text, issuer=text, study=text, accession=text, offset=st.integers(-1095, -1))
def test_any_entry_round_trips_and_is_found_both_ways(store_home: HomePaths, pid: str, issuer: str, study: str,
                                                      accession: str, offset: int) -> None:
    pid, issuer = pid.strip() or "X", issuer.strip()
    entry = MappingEntry(pseudonym=f"TEST01-{abs(hash((pid, issuer))) % 10**12:012d}", patient_id=pid,
                         issuer=issuer, study_uid=study.strip() or "1.2", new_study_uid="2.25.1",
                         accession=accession.strip(), date_offset=offset)
    # A ledger of its own per example (the keys are shared): examples that draw the same study must
    # not see each other's entries (an empty accession does not erase a stored one, by design).
    with open_ledger(store_home.root / f"state-{next(_ledgers)}.db") as ledger:
        store = MappingStore.open(ledger, store_home)
        store.record([entry])
        [by_pseudonym] = [m for m in store.lookup_pseudonym(entry.pseudonym) if m.patient_id == pid]
        assert (by_pseudonym.issuer, by_pseudonym.date_offset) == (issuer, offset)
        assert entry.study_uid in {s["study_uid"] for s in by_pseudonym.studies}
        assert entry.pseudonym in {m.pseudonym for m in store.lookup_patient(pid, issuer)}
        assert entry.pseudonym in {m.pseudonym for m in store.lookup_patient(pid)}
        if issuer:
            assert entry.pseudonym not in {m.pseudonym for m in store.lookup_patient(pid, issuer + "x")}
        row = sql.get_row(ledger, store.study_ref(entry, store.secret_fp))
        assert row is not None and store.unseal(row).entry == entry
        if len(pid.encode()) >= 8:  # shorter strings may occur in random ciphertext by chance
            assert pid.encode() not in row.sealed


def test_mapping_key_is_created_0600_once_and_checked(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "h")
    first = load_mapping_key(paths)
    assert oct(os.stat(paths.mapping_key).st_mode & 0o777) == "0o600"
    assert load_mapping_key(paths) == first
    paths.mapping_key.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        load_mapping_key(paths)
    paths.mapping_key.chmod(0o600)
    paths.mapping_key.write_text("not a key\n")
    with pytest.raises(KeyFileError, match="not an sfr-gateway mapping key"):
        load_mapping_key(paths)


def test_init_creates_the_mapping_key(home: Path, cli) -> None:
    paths = HomePaths(home)
    assert paths.mapping_key.is_file()
    paths.mapping_key.chmod(0o644)
    r = cli("--home", home, "mapping", "lookup", "TEST01-AAAAAAAAAAAA")
    assert r.exit_code == 4 and "chmod 600" in r.stderr
