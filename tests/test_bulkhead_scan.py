"""Scan and files sharing a SOP Instance UID (issues 15 and 23): both paths stay in the index,
scan reports them, and a second copy is never mistaken for a move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from faults_fixtures import ledger_rows

from sfr_gateway.sample import generate_export


def _scan(cli, home: Path, *sources: Path) -> dict:
    result = cli("--home", home, "scan", "--json", *sources)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _ids(home: Path) -> dict[str, int]:
    return {bytes(p).decode(): i for i, p in ledger_rows(home / "state.db", "SELECT id, path FROM instances")}


def test_scan_reports_files_sharing_a_uid_and_keeps_both_paths(cli, home: Path, tmp_path: Path) -> None:
    export = generate_export(tmp_path / "export", patients=1, slices=3, extras=False, seed=2)
    first = sorted(export.files)[0]
    copy = tmp_path / "export" / "again" / "copy.dcm"
    copy.parent.mkdir()
    shutil.copy2(first, copy)
    data = _scan(cli, home, export.root)
    assert data["this_scan"]["shared_uid"] == 2
    assert data["shared_uids"] == {"uids": 1, "files": 2}
    assert data["shared_uid_groups"] == [[str(first), str(copy)]]  # first indexed first: the one released
    assert set(_ids(home)) >= {str(first), str(copy)}
    text = cli("--home", home, "scan", export.root).stdout
    assert "2 files share 1 SOP Instance UIDs" in text and str(copy) in text
    again = _scan(cli, home, export.root)  # an unchanged rescan reads nothing and still knows
    assert again["this_scan"]["shared_uid"] == 0 and again["shared_uids"] == {"uids": 1, "files": 2}


def test_a_second_copy_is_not_mistaken_for_a_move(cli, home: Path, tmp_path: Path) -> None:
    export = generate_export(tmp_path / "export", patients=1, slices=3, extras=False, seed=2)
    first = sorted(export.files)[0]
    copy = tmp_path / "export" / "again" / "copy.dcm"
    copy.parent.mkdir()
    shutil.copy2(first, copy)
    _scan(cli, home, export.root)
    before = _ids(home)
    first.unlink()  # the original goes; the copy was already there: not its new place
    data = _scan(cli, home, export.root)
    assert (data["this_scan"]["missing"], data["this_scan"]["moved"]) == (1, 0)
    rows = dict(ledger_rows(home / "state.db", "SELECT CAST(path AS TEXT), state FROM instances"))
    assert rows[str(first)] == "missing" and rows[str(copy)] == "indexed"
    assert _ids(home)[str(copy)] == before[str(copy)]
    assert data["shared_uids"] == {"uids": 0, "files": 0}


def test_a_real_move_is_still_a_move_and_keeps_its_place(cli, home: Path, tmp_path: Path) -> None:
    export = generate_export(tmp_path / "export", patients=1, slices=3, extras=False, seed=2)
    first = sorted(export.files)[0]
    _scan(cli, home, export.root)
    old_id = _ids(home)[str(first)]
    moved = tmp_path / "export" / "zz-moved.dcm"
    first.rename(moved)
    data = _scan(cli, home, export.root)
    assert (data["this_scan"]["missing"], data["this_scan"]["moved"]) == (0, 1)
    ids = _ids(home)
    assert str(first) not in ids and ids[str(moved)] == old_id  # first seen first: still owns its UID
    assert data["shared_uids"] == {"uids": 0, "files": 0}
    assert data["this_scan"]["shared_uid"] == 0  # the move showed one file at two paths only mid-scan


def test_the_listing_names_files_the_engine_refused(tmp_path: Path) -> None:
    from sfr_gateway.ledger import open_ledger
    from sfr_gateway.ledger.batches import record_quarantined
    from sfr_gateway.run.held import held_back

    export = generate_export(tmp_path / "export", patients=1, slices=2, extras=False, seed=2)
    with open_ledger(tmp_path / "state.db") as ledger:
        from sfr_gateway.home.config import SelectionRules
        from sfr_gateway.scan.walk import scan

        scan(ledger, [export.root], SelectionRules(), workers=1)
        (uid, study), = ledger.conn.execute("SELECT sop_instance_uid, study_uid FROM instances ORDER BY id LIMIT 1")
        with ledger.transaction() as conn:
            record_quarantined(conn, study, [(uid, "unparsable")])
        data = held_back(ledger, refused=True)
    assert (data["studies"], data["files"], data["quarantined"]) == (0, 0, 1)
    assert data["items"] == [{"kind": "refused", "path": str(sorted(export.files)[0]), "reason": "unparsable",
                              "since": data["items"][0]["since"]}]


def test_shared_uid_queries_go_through_the_uid_index_not_the_whole_index(tmp_path: Path) -> None:
    """Without statistics SQLite picked the state index for a UID lookup, reading every indexed
    row once per file: a 50,000-file first scan took minutes. Every statement of the shared-UID
    bookkeeping must look instances up by UID or path, never scan them."""
    from sfr_gateway.home.config import SelectionRules
    from sfr_gateway.ledger import batches, held, instances, open_ledger
    from sfr_gateway.scan.walk import scan

    export = generate_export(tmp_path / "export", patients=2, slices=4, extras=False, seed=2)
    shutil.copy2(sorted(export.files)[0], tmp_path / "export" / "copy.dcm")
    with open_ledger(tmp_path / "state.db") as ledger:
        scan(ledger, [export.root], SelectionRules(), workers=1)
        study, uid = ledger.conn.execute("SELECT study_uid, sop_instance_uid FROM instances LIMIT 1").fetchone()
        statements: list[str] = []
        ledger.conn.set_trace_callback(statements.append)

        def noted() -> None:
            with ledger.transaction() as conn:
                instances.note_shared(conn, [uid])

        for call in (noted, lambda: instances.prune_shared(ledger), lambda: instances.shared_in_scan(ledger, 1),
                     lambda: instances.shared_groups(ledger), lambda: held.shared_eligible(ledger),
                     lambda: held.held_files(ledger), lambda: held.counts(ledger),
                     lambda: batches.pending_instances(ledger, study)):
            call()
        ledger.conn.set_trace_callback(None)
        plans = {}
        for sql in statements:
            if sql.lstrip().upper().startswith(("SELECT", "INSERT", "DELETE")):
                plans[sql] = [row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert len(plans) >= 8
    for sql, plan in plans.items():
        bad = [step for step in plan if step.startswith("SCAN i") or "instances_state" in step
               or step in ("SCAN instances", "SCAN o")]
        assert not bad, (sql, plan)
