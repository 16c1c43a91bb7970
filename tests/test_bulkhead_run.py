"""One bad study never stops a site (issue 23): `run` isolates failures per study, holds back
what it cannot release with a reason, delivers everything else in the same run, and exits with
the partial code (19), never the storage code (16), for a data problem."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from bulkhead_fixtures import delivered, make_site, quarantine_list, run_report, spoil_twelve
from faults_fixtures import integrity_ok, ledger_rows

from sfr_gateway.errors import HeldBackError, StorageError

PARTIAL = HeldBackError.exit_code


def test_twelve_files_one_conflicting_uid_and_one_twin(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=5, seed=3)
    conflict, owner, copy = spoil_twelve(site.export)
    assert len([p for p in site.export.root.rglob("*") if p.is_file()]) == 12
    proc = site.gateway("run")  # as cron runs it: the summary line, attention lines on stderr
    assert proc.returncode == PARTIAL == 19, proc.stderr  # partial, never StorageError's 16
    assert StorageError.exit_code == 16 and "state.db" not in proc.stderr
    assert "released 10 instances in 2 batches (0 quarantined, held back 1 file)" in proc.stdout
    assert f"attention: held back {conflict}: same SOP Instance UID as {owner}" in proc.stderr
    status = json.loads(site.gateway("status", "--json").stdout)
    assert status["instances"]["packaged"] == 10  # every other instance, the twin once
    assert status["batches"]["acknowledged"]["batches"] == 2 and set(status["batches"]) == {"acknowledged"}
    held = status["held_back"]
    assert (held["studies"], held["files"], held["identical_copies"]) == (0, 1, 1)
    assert held["items"][0]["path"] == str(conflict) and held["items"][0]["other_path"] == str(owner)
    datasets = delivered(site, tmp_path / "opened")
    counts = Counter(ds.SOPInstanceUID for ds in datasets)
    assert len(counts) == 10 and set(counts.values()) == {1}  # no UID twice
    assert 99 not in {int(ds.InstanceNumber) for ds in datasets}  # the conflicting image stayed home
    # the held-back file is listed with its reason, naming the other path
    listing = quarantine_list(site)
    (item,) = [i for i in listing["items"] if i["kind"] == "file"]
    assert item["path"] == str(conflict) and item["other_path"] == str(owner)
    assert item["reason"] == "duplicate-uid-conflict" and "other content" in item["detail"]
    assert listing["files"] == 1 and listing["identical_copies"] == 1
    text = site.gateway("quarantine", "list").stdout
    assert str(conflict) in text and str(owner) in text and "what to do" in text
    assert str(copy) not in text  # an identical copy is no problem: released once, not listed
    records = [json.loads(p.read_text()) for p in (site.home / "quarantine").glob("*.json")]
    assert [(r["source"], r["reason"]) for r in records] == [(str(conflict), "duplicate-uid-conflict")]
    assert str(owner) in records[0]["detail"]
    # a second run delivers nothing new
    before = sorted(p.name for p in site.dropbox.iterdir())
    proc2, again = run_report(site)
    assert proc2.returncode == 0, proc2.stderr
    assert again["release"]["instances"] == 0 and again["upload"]["acknowledged"] == 0
    assert sorted(p.name for p in site.dropbox.iterdir()) == before
    assert quarantine_list(site)["files"] == 1  # still held back, still listed
    assert integrity_ok(site.home / "state.db")


def test_a_conflicting_file_fixed_in_the_export_is_looked_at_again(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=3, seed=5)
    conflict, _, _ = spoil_twelve(site.export)
    run_report(site)
    import pydicom

    ds = pydicom.dcmread(conflict)  # the site re-exports it with a UID of its own
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1374.99.1"
    ds.save_as(conflict, enforce_file_format=True)
    proc, report = run_report(site)
    assert proc.returncode == 0, proc.stderr
    assert report["release"]["instances"] == 1
    assert quarantine_list(site)["files"] == 0


def test_a_later_file_with_a_released_uid_is_held_back_and_a_later_copy_is_not(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=3, seed=9)
    proc, first = run_report(site)
    assert proc.returncode == 0 and first["release"]["instances"] == 6
    import shutil

    import pydicom

    p0 = sorted(f for f in site.export.files if "P0000" in str(f))
    p1 = sorted(f for f in site.export.files if "P0001" in str(f))
    late = site.export.root / "late"
    late.mkdir()
    shutil.copy2(p0[1], late / "copy.dcm")  # a re-export of a released file
    ds = pydicom.dcmread(p1[0])  # another patient's image under a released UID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.dcmread(p0[0]).SOPInstanceUID
    ds.save_as(late / "clash.dcm", enforce_file_format=True)
    proc, report = run_report(site)
    assert proc.returncode == PARTIAL, proc.stderr
    assert report["release"]["instances"] == 0
    assert report["release"]["held_back"]["file_list"] == [{"path": str(late / "clash.dcm"), "other_path": str(p0[0])}]
    assert report["release"]["duplicates"]["identical_copies"] == 1


def test_an_engine_exception_in_one_study_of_five_holds_back_only_that_one(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=5, slices=4, seed=11)
    victim = "P0002"
    plain = site.gateway("run", "--dry-run")
    assert "would release 20 instances of 5 studies" in plain.stdout
    proc, report = run_report(site, "--workers", "2", env={"SFR_GATEWAY_RAISE": f"deidentify:/{victim}/"})
    assert proc.returncode == PARTIAL, proc.stderr
    assert report["release"]["instances"] == 16 and report["upload"]["acknowledged"] == 4  # the other four
    (held,) = report["release"]["held_back"]["list"]
    assert held["reason"] == "engine-error" and held["detail"].startswith("InjectedFault at ")
    assert f"/{victim}/" in held["example"] and held["files"] == 4
    opened = delivered(site, tmp_path / "opened")
    assert len(opened) == 16 and len({ds.PatientName for ds in opened}) == 4
    assert "Traceback" not in proc.stderr and "held back 1 study" in proc.stderr
    log = (site.home / "logs" / "sfr-gateway.log").read_text()
    assert "Traceback (most recent call last)" in log and "InjectedFault" in log and "deidentify_file" in log
    assert held["pseudonym"] in log
    # nothing of its batch was recorded or left in sight
    assert ledger_rows(site.home / "state.db", "SELECT COUNT(*) FROM batches WHERE state = 'packaging'") == [(0,)]
    assert [p.name for p in (site.home / "outbox").iterdir() if p.is_file()] == []
    # status and the quarantine listing name it
    status = json.loads(site.gateway("status", "--json").stdout)
    assert [i["pseudonym"] for i in status["held_back"]["items"]] == [held["pseudonym"]]
    assert held["pseudonym"] in site.gateway("status").stdout
    (item,) = quarantine_list(site)["items"]
    assert item["kind"] == "study" and item["reason"] == "engine-error" and "retried" in item["meaning"]
    # retried at every run: still failing, one more attempt; then fixed, delivered
    proc = site.gateway("run", env={"SFR_GATEWAY_RAISE": f"deidentify:/{victim}/"})  # as cron runs it
    assert proc.returncode == PARTIAL and quarantine_list(site)["items"][0]["attempts"] == 2
    # the traceback is in the log file, not on the terminal; the terminal names the study and the log
    assert "Traceback" not in proc.stderr and "held back 1 study" in proc.stdout
    assert f"attention: held back the study of {held['pseudonym']} (4 files, e.g. " in proc.stderr
    assert "engine-error: InjectedFault at" in proc.stderr and "sfr-gateway.log" in proc.stderr
    proc, report = run_report(site)
    assert proc.returncode == 0, proc.stderr
    assert report["release"]["instances"] == 4 and quarantine_list(site)["items"] == []
    assert integrity_ok(site.home / "state.db")


def test_a_ledger_constraint_holds_back_one_study_and_is_never_a_storage_error(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=3, slices=3, seed=13)
    assert site.gateway("scan").returncode == 0
    db = site.home / "state.db"
    study = ledger_rows(db, "SELECT study_uid FROM instances WHERE CAST(path AS TEXT) LIKE '%/P0001/%' LIMIT 1")[0][0]
    conn = sqlite3.connect(db)
    conn.execute(f"""CREATE TRIGGER refuse_one BEFORE INSERT ON releases WHEN NEW.study_uid = '{study}'
                     BEGIN SELECT RAISE(ABORT, 'test: refused'); END""")
    conn.commit()
    conn.close()
    proc, report = run_report(site)
    assert proc.returncode == PARTIAL, proc.stderr
    assert report["release"]["instances"] == 6 and report["upload"]["acknowledged"] == 2
    (held,) = report["release"]["held_back"]["list"]
    assert held["reason"] == "ledger-conflict" and "test: refused" in held["detail"]
    assert ledger_rows(db, "SELECT COUNT(*) FROM batches WHERE study_uid = ?".replace("?", f"'{study}'")) == [(0,)]
    assert len(site.batches()) == 2 and not [p for p in (site.home / "outbox").iterdir() if p.is_file()]
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER refuse_one")
    conn.commit()
    conn.close()
    proc, report = run_report(site)
    assert proc.returncode == 0 and report["release"]["instances"] == 3
    assert integrity_ok(db)


def test_a_file_vanished_since_the_scan_defers_its_study_instead_of_sending_it_short(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=3, slices=3, seed=17)
    assert site.gateway("scan").returncode == 0
    victim = sorted(f for f in site.export.files if "/P0001/" in str(f))[1]
    victim.unlink()  # after the scan: the index still has it
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    proc, report = run_report(site, str(elsewhere))  # scans another folder only: the release finds it gone
    assert proc.returncode == PARTIAL, proc.stderr
    assert report["release"]["instances"] == 6 and report["release"]["quarantined"] == 0
    (held,) = report["release"]["held_back"]["list"]
    assert held["reason"] == "source-changed" and str(victim) in held["detail"]
    assert ledger_rows(site.home / "state.db", "SELECT COUNT(*) FROM releases WHERE state = 'quarantined'") == [(0,)]
    proc, report = run_report(site)  # the next run rescans: the study goes without the file it no longer has
    assert proc.returncode == 0, proc.stderr
    assert report["release"]["instances"] == 2 and quarantine_list(site)["items"] == []


def test_the_same_instance_in_another_transfer_syntax_is_released_once_not_held(tmp_path: Path, cli) -> None:
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    site = make_site(tmp_path, cli, patients=1, slices=3, seed=19)
    source = sorted(site.export.files)[0]
    ds = pydicom.dcmread(source)
    ds.remove_private_tags()  # read back from implicit VR, a private LO is UN: a difference to the engine
    ds.save_as(source, enforce_file_format=True)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # a re-export by a PACS that prefers implicit VR
    variant = site.export.root / "zz-reexport" / "implicit.dcm"
    variant.parent.mkdir()
    ds.save_as(variant, implicit_vr=True, little_endian=True)
    assert variant.read_bytes() != source.read_bytes()
    ds.PatientWeight = "80"  # and one that differs in one attribute: a conflict naming it
    clash = site.export.root / "zz-reexport" / "clash.dcm"
    ds.save_as(clash, implicit_vr=True, little_endian=True)
    proc, report = run_report(site)
    assert proc.returncode == PARTIAL, proc.stderr
    assert report["release"]["instances"] == 3
    assert report["release"]["duplicates"] == {"identical_copies": 1, "conflicts": 1, "new_conflicts": 1}
    (item,) = quarantine_list(site)["items"]
    assert item["path"] == str(clash) and item["other_path"] == str(source)
    assert "PatientWeight" in item["detail"] and "80" not in item["detail"].replace(str(source), "")
