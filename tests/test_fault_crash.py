"""Fault campaign, crashes: SIGKILL at every checkpoint of the pipeline, then a rerun.

After each crash and rerun: every eligible consented instance delivered exactly once, no partial
file ever under a final name in the outbox or the drop folder (partials are hidden or ``.part``),
and ``PRAGMA integrity_check`` of the ledger ok.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from faults_fixtures import integrity_ok, ledger_rows, snapshot, visible_files
from pipeline_fixtures import Site, site  # noqa: F401

ELIGIBLE = 84

POINTS = [
    ("mid-deidentify:3", 2),  # a worker process dies: the run must fail, not hang
    ("mid-encrypt:3", 1),  # the third batch's ciphertext half written
    ("drop-before-rename:4", 1),  # the second batch complete as .part in the drop folder
    ("drop-after-rename:2", 1),  # its signature is there, the data not yet
]


def _open_visible(site: Site, into: Path) -> list:
    """Open every batch under a final name in the drop folder: each must be whole and verify."""
    import pydicom

    from sfr_gateway.central import open_batch
    from sfr_gateway.crypto.sign import PublicKey

    key = PublicKey.load(site.home / "keys" / "site-signing.pub")
    datasets = []
    for batch in site.batches():
        opened = open_batch(batch, [site.identity], {"TEST01": key}, into)
        datasets += [pydicom.dcmread(p) for p in sorted(opened.directory.rglob("*.dcm"))]
    return datasets


@pytest.mark.parametrize(("point", "workers"), POINTS)
def test_crash_then_rerun_delivers_exactly_once(site: Site, cli, point: str, workers: int, tmp_path: Path) -> None:
    site.consent_all(cli)
    before = snapshot(site.export.root)
    crashed = site.gateway("run", "--workers", str(workers), env={"SFR_GATEWAY_FAULT": point})
    assert crashed.returncode != 0, crashed.stdout
    if workers == 1:
        assert crashed.returncode == -9, crashed.stderr
    else:  # the parent survives a dead worker: a clear error, a documented non-zero exit
        assert crashed.returncode == 1 and "worker process died" in crashed.stderr
    assert integrity_ok(site.home / "state.db")
    _open_visible(site, tmp_path / "after-crash")  # whatever is visible after the crash is whole
    visible_outbox = [p for p in visible_files(site.home / "outbox")]
    for p in visible_outbox:  # a visible batch in the outbox is complete and signed
        assert p.name.endswith((".age", ".minisig"))
    final = site.gateway("run", "--json")
    assert final.returncode == 0, final.stderr
    report = json.loads(final.stdout)
    assert report["upload"]["failed"] == {}
    counts = Counter(ds.SOPInstanceUID for ds in _open_visible(site, tmp_path / "after-rerun"))
    assert len(counts) == ELIGIBLE and set(counts.values()) == {1}  # none lost, none twice
    assert [p for p in (site.home / "outbox").iterdir() if p.is_file()] == []  # no temp left either
    assert not list(site.dropbox.glob("*.part"))
    assert integrity_ok(site.home / "state.db")
    states = Counter(s for (s,) in ledger_rows(site.home / "state.db", "SELECT state FROM batches"))
    assert set(states) == {"acknowledged"}
    assert snapshot(site.export.root) == before  # originals untouched


def test_crash_during_consent_import_applies_nothing(site: Site, cli, tmp_path: Path) -> None:
    csv = tmp_path / "consent.csv"
    lines = [f"{p.patient_id};{p.issuer};consented;2026-01-15" for p in site.export.patients]
    csv.write_text("patient_id;issuer;status;date\n" + "\n".join(lines) + "\n", encoding="utf-8")
    crashed = site.gateway("consent", "import", csv, env={"SFR_GATEWAY_FAULT": "mid-consent-import:2"})
    assert crashed.returncode == -9
    assert integrity_ok(site.home / "state.db")
    rows = ledger_rows(site.home / "state.db", "SELECT count(*) FROM consent_records")
    assert rows == [(0,)]  # one transaction: all or nothing
    run = site.gateway("run", "--json")
    assert json.loads(run.stdout)["release"]["instances"] == 0
    again = site.gateway("consent", "import", csv)
    assert again.returncode == 0, again.stderr
    assert json.loads(site.gateway("run", "--json").stdout)["release"]["instances"] == ELIGIBLE


def test_a_dead_worker_fails_deidentify_instead_of_hanging(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = site.gateway("deidentify", site.export.root, "--output", out, "--workers", "2",
                        env={"SFR_GATEWAY_FAULT": "mid-deidentify:3"})
    assert proc.returncode == 1 and "worker process died" in proc.stderr
    for path in out.rglob("*"):  # what was written is whole (temp + rename): every .dcm opens
        if path.is_file() and path.suffix == ".dcm":
            import pydicom

            pydicom.dcmread(path)
