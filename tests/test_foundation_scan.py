"""scan: counts, eligibility reasons, incremental rescans, moved/deleted files, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from sfr_gateway.home.config import SelectionRules, load_config
from sfr_gateway.ledger import open_ledger
from sfr_gateway.scan.walk import scan


def scan_json(cli, home: Path, *sources: Path) -> dict:
    result = cli("--home", home, "scan", *sources, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


def test_scan_counts_and_eligibility(home: Path, sample_export, cli) -> None:
    data = scan_json(cli, home, sample_export.root)
    assert data["complete"] is True
    assert data["instances"] == len(sample_export.files)
    assert data["patients"] == 5
    assert data["this_scan"]["read"] == len(sample_export.files)
    # Per patient: localizer, 2 axial series of 6, dose report; patient 1 and 3 have a follow-up;
    # patient 2 a head CT; patient 3 an out-of-window chest CT; patient 4 an MR.
    assert data["eligible"] == {"patients": 5, "studies": 7, "series": 14, "instances": 84}
    assert data["excluded"] == {"localizer": 8, "dose-report": 8, "not-chest": 6, "modality": 6,
                                "outside-date-window": 12}
    assert data["unreadable"] == {}


def test_scan_never_changes_sources(home: Path, sample_export, cli) -> None:
    before = fingerprint(sample_export.root)
    scan_json(cli, home, sample_export.root)
    assert fingerprint(sample_export.root) == before


def test_rescan_reads_nothing_unchanged(home: Path, export_copy: Path, cli) -> None:
    first = scan_json(cli, home, export_copy)
    again = scan_json(cli, home, export_copy)
    assert again["this_scan"]["read"] == 0
    assert again["this_scan"]["unchanged"] == first["this_scan"]["seen"]
    assert again["instances"] == first["instances"]


def test_rescan_rereads_a_changed_file_only(home: Path, export_copy: Path, cli) -> None:
    scan_json(cli, home, export_copy)
    target = sorted(export_copy.rglob("ser02_0000.dcm"))[0]
    ds = pydicom.dcmread(target)
    ds.StudyDate = "20190101"
    ds.save_as(target)
    again = scan_json(cli, home, export_copy)
    assert again["this_scan"]["read"] == 1 and again["this_scan"]["changed"] == 1
    assert again["excluded"]["outside-date-window"] == 13


def test_deleted_and_moved_files_are_noticed(home: Path, export_copy: Path, cli) -> None:
    first = scan_json(cli, home, export_copy)
    files = sorted(export_copy.rglob("*.dcm"))
    files[0].unlink()
    (export_copy / "elsewhere").mkdir()
    shutil.move(files[1], export_copy / "elsewhere" / "renamed.dcm")
    again = scan_json(cli, home, export_copy)
    assert again["this_scan"]["missing"] == 1
    assert again["this_scan"]["moved"] == 1
    assert again["this_scan"]["read"] == 1  # only the moved file is opened
    assert again["instances"] == first["instances"] - 1
    assert again["missing"] == 1


def raw_dataset_bytes(ds: pydicom.Dataset) -> bytes:
    """The dataset alone, implicit VR little endian, without preamble or file meta."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    del ds.file_meta
    write_dataset(fp, ds)
    return fp.getvalue()


def _write_bad_inputs(root: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    (root / "not dicom.txt").write_text("hello, this is not DICOM")
    (root / "empty.dcm").write_bytes(b"")
    data = ct.read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (root / "cut-header.dcm").write_bytes(data[:900])
    # A raw dataset without preamble or file meta, as old systems write: indexed.
    (root / "raw-no-meta.dcm").write_bytes(raw_dataset_bytes(pydicom.dcmread(ct)))
    (root / b"caf\xe9 non-utf8.dcm".decode("utf-8", "surrogateescape")).write_bytes(data)
    (root / "with space.dcm").write_bytes(data)
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "parent-loop")


def test_bad_inputs_are_listed_and_scan_goes_on(home: Path, tmp_path: Path, cli) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_bad_inputs(bad)
    data = scan_json(cli, home, bad)
    assert data["complete"]
    assert data["unreadable"] == {"not-dicom": 1, "empty-file": 1, "truncated": 2, "symlink-loop": 3}
    assert data["instances"] == 3  # raw dataset without meta, the non-UTF-8 name and the spaced name
    with open_ledger(home / "state.db") as ledger:
        rows = dict(ledger.conn.execute("SELECT path, transfer_syntax FROM instances").fetchall())
    raw = [ts for path, ts in rows.items() if bytes(path).endswith(b"raw-no-meta.dcm")]
    assert raw and raw[0].startswith("none")


def test_unreadable_file_without_permission(home: Path, tmp_path: Path) -> None:
    """Scan as an unprivileged user when the suite runs as root (root ignores file modes)."""
    if os.geteuid() == 0:  # pytest's tmp_path is private to root: use a folder nobody can reach
        base = Path(tempfile.mkdtemp(prefix="sfr-perm-"))
        os.chmod(base, 0o777)
    else:
        base = tmp_path
    try:
        src = base / "src"
        src.mkdir()
        os.chmod(src, 0o755)
        locked = src / "locked.dcm"
        shutil.copy(get_testdata_file("CT_small.dcm"), locked)
        shutil.copy(get_testdata_file("CT_small.dcm"), src / "open.dcm")
        os.chmod(src / "open.dcm", 0o644)
        os.chmod(locked, 0)
        db = base / "db" / "state.db"
        db.parent.mkdir()
        os.chmod(db.parent, 0o777)
        with open_ledger(tmp_path / "warm.db") as ledger:  # load every lazy import before dropping root
            scan(ledger, [src], SelectionRules())
        pid = os.fork()
        if pid == 0:  # child: drop privileges if root, scan, report through the exit status
            code = 1
            try:
                # Open the ledger before dropping root: it reads its migrations from the package,
                # which lives in the checkout, and the checkout may sit where `nobody` cannot go
                # (/root/..., a 0700 folder). The scan itself then runs unprivileged.
                with open_ledger(db) as ledger:
                    if os.geteuid() == 0:
                        os.setgid(65534)
                        os.setuid(65534)
                    result = scan(ledger, [src], SelectionRules())
                code = 10 * result.summary["unreadable"].get("permission-denied", 0) + result.summary["instances"]
            except BaseException as exc:  # the parent sees the reason in the failure message
                (base / "child-error.txt").write_text(repr(exc))
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        error = (base / "child-error.txt").read_text() if (base / "child-error.txt").exists() else ""
        assert os.WEXITSTATUS(status) == 11, error  # one permission-denied, one indexed
    finally:
        if base != tmp_path:
            shutil.rmtree(base)


def test_interrupted_scan_leaves_consistent_ledger_and_next_scan_completes(
    home: Path, sample_export, tmp_path: Path
) -> None:
    config = load_config(home)

    def stop_after(n: int) -> None:
        if n == 300:
            raise KeyboardInterrupt

    export_copy = tmp_path / "big"
    for name in "abcd":
        shutil.copytree(sample_export.root, export_copy / name)
    with open_ledger(config.home.state_db) as ledger:
        with pytest.raises(KeyboardInterrupt):
            scan(ledger, [export_copy], config.selection, progress=stop_after)
        partial = ledger.conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        status = ledger.conn.execute("SELECT status FROM scans ORDER BY id DESC").fetchone()[0]
    assert 0 < partial < 300
    assert status == "interrupted"
    conn = sqlite3.connect(config.home.state_db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with open_ledger(config.home.state_db) as ledger:
        result = scan(ledger, [export_copy], config.selection)
    assert result.complete
    assert result.read == result.seen - partial
    assert result.summary["instances"] == result.seen


def test_scan_of_pydicom_test_files_does_not_crash(home: Path, tmp_path: Path, cli) -> None:
    src = tmp_path / "pydicom"
    src.mkdir()
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    for path in folder.rglob("*"):
        if path.is_file():
            shutil.copy(path, src / path.name)
    data = scan_json(cli, home, src)
    total = data["instances"] + sum(data["unreadable"].values())
    assert total == len(list(src.iterdir()))
    assert data["instances"] > 50


def test_scan_json_schema(home: Path, sample_export, cli) -> None:
    data = scan_json(cli, home, sample_export.root)
    assert set(data) >= {"scan_id", "complete", "this_scan", "patients", "studies", "series", "instances",
                         "eligible", "excluded", "unreadable", "missing"}
    assert set(data["this_scan"]) == {"seen", "read", "unchanged", "new", "changed", "unreadable", "missing", "moved",
                                      "shared_uid"}
    assert set(data["eligible"]) == {"patients", "studies", "series", "instances"}
    assert all(isinstance(v, int) for v in data["this_scan"].values())


def test_scan_without_sources_scans_the_configured_exports(home: Path, sample_export, cli) -> None:
    alone = cli("--home", home, "scan", "--json")
    assert alone.exit_code == 3  # a configuration error: nothing given, nothing configured
    assert "set [site] exports in config.toml" in alone.stderr
    config = home / "config.toml"
    text = config.read_text()
    assert "\nexports = []\n" in text
    config.write_text(text.replace("\nexports = []\n", f"\nexports = [{json.dumps(str(sample_export.root))}]\n"))
    first = scan_json(cli, home)
    assert first["this_scan"]["new"] == first["instances"] == len(sample_export.files)
    named = scan_json(cli, home, sample_export.root)  # the same folder, named: nothing new, nothing gone
    assert (named["this_scan"]["new"], named["this_scan"]["missing"]) == (0, 0)
    assert named["this_scan"]["unchanged"] == len(sample_export.files)


def test_scan_missing_source_is_an_input_error(home: Path, tmp_path: Path, cli) -> None:
    result = cli("--home", home, "scan", tmp_path / "nowhere")
    assert result.exit_code == 8
    assert "not found" in result.stderr


def test_scan_output_has_no_patient_values(home: Path, sample_export, cli) -> None:
    result = cli("--home", home, "scan", sample_export.root)
    everything = result.stdout + result.stderr + json.dumps(scan_json(cli, home, sample_export.root))
    for patient in sample_export.patients:
        for tokens in patient.tokens.values():
            for token in tokens:
                assert token not in everything


def test_header_facts_same_from_the_lean_reader_and_from_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan's fast path (raw ASCII values, lean reader) indexes exactly what pydicom's gives."""
    from sfr_gateway import sample
    from sfr_gateway.scan import header

    export = sample.generate_export(tmp_path / "export", patients=3, seed=21, rows=8, cols=8, slices=2)
    fast = {p: header.read_header(str(p)) for p in export.files}
    monkeypatch.setattr(header, "_read_lean", lambda path: None)
    monkeypatch.setattr(header, "_raw_ascii", lambda ds, keyword: None)
    slow = {p: header.read_header(str(p)) for p in export.files}
    assert fast == slow
