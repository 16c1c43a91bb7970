"""The cron pipeline fills the mapping; what the central host received is answerable locally."""

from __future__ import annotations

import json
from pathlib import Path

from mapping_fixtures import stored_entries
from pipeline_fixtures import Site, site  # noqa: F401 - the fixture

from sfr_gateway.home.config import HomePaths
from sfr_gateway.keys.files import encode_secret
from sfr_gateway.ledger import mapping as sql
from sfr_gateway.ledger import open_ledger


def test_run_fills_the_mapping_and_central_pseudonyms_resolve(site: Site, cli) -> None:  # noqa: F811
    site.consent_all(cli)
    r = cli("--home", site.home, "run", "--json")
    assert r.exit_code == 0, r.stderr
    datasets = site.open_all()
    assert datasets
    with open_ledger(HomePaths(site.home).state_db) as ledger:
        batches = ledger.conn.execute("SELECT COUNT(*) FROM batches WHERE state != 'cancelled'").fetchone()[0]
        assert len(sql.released(ledger)) == batches > 0
        assert sql.unsynced_batches(ledger) == []
    by_id = {p.patient_id: p for p in site.export.patients}
    for ds in datasets[:: max(1, len(datasets) // 8)]:
        r = cli("--home", site.home, "mapping", "lookup", str(ds.PatientID), "--json")
        [match] = json.loads(r.stdout)["matches"]
        patient = by_id[match["patient_id"]]
        assert match["issuer"] == patient.issuer
        study = next(s for s in match["studies"] if s["new_study_uid"] == ds.StudyInstanceUID)
        assert study["study_uid"] in patient.study_uids
        assert study["new_accession"] == str(ds.AccessionNumber)
    assert cli("--home", site.home, "mapping", "verify").exit_code == 0

    # the whole state.db lost: a rescan of the export gives the same mapping back
    before = stored_entries(site.home)
    for suffix in ("", "-wal", "-shm"):
        Path(str(HomePaths(site.home).state_db) + suffix).unlink(missing_ok=True)
    r = cli("--home", site.home, "mapping", "regenerate", site.export.root)
    assert r.exit_code == 0, r.stderr
    assert before == stored_entries(site.home)


def test_batches_from_another_secret_are_reported(site: Site, cli) -> None:  # noqa: F811
    site.consent_all(cli)
    assert cli("--home", site.home, "run").exit_code == 0
    with open_ledger(HomePaths(site.home).state_db) as ledger:
        ledger.conn.execute("DELETE FROM mapping_released")  # as if the pipeline never synced
        sql.delete_all_rows(ledger)
    HomePaths(site.home).pseudonym_key.write_text(encode_secret(bytes(32)))
    r = cli("--home", site.home, "mapping", "verify")
    assert r.exit_code == 14
    assert "batch(es) carry pseudonyms that neither the current secret" in r.stderr
    r = cli("--home", site.home, "mapping", "regenerate")
    assert r.exit_code == 14 and "the pseudonym secret or the site id changed" in r.stderr
