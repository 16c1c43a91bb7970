"""Every file the gateway could not use is named, with its path and reason, until fixed or gone
(issue 17): `scan --json`, `quarantine list` (table, CSV, JSON), and `run`'s summary line at every
run while such files exist."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from operation_fixtures import own_site  # noqa: F401
from pipeline_fixtures import Site


def _break(site: Site) -> dict[str, str]:
    """Two files the scan cannot read: plain text, and a DICOM file cut in its pixel data."""
    text = site.export.root / "P0000" / "notes.txt"
    text.write_text("not an image\n", encoding="utf-8")
    cut = site.export.root / "P0001" / "S00" / "ser02_0000.dcm"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 2000])
    return {str(text): "not-dicom", str(cut): "truncated"}


def test_unreadable_files_are_listed_until_fixed_or_gone(own_site: Site, sample_export) -> None:
    site = own_site
    broken = _break(site)
    scan = site.gateway("scan", "--json")
    assert scan.returncode == 0, scan.stderr
    listed = {u["path"]: u["reason"] for u in json.loads(scan.stdout)["unreadable_files"]}
    assert listed == broken

    as_json = site.gateway("quarantine", "list", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    items = {i["path"]: i for i in json.loads(as_json.stdout)["items"] if i["kind"] == "unreadable"}
    assert {p: i["reason"] for p, i in items.items()} == broken
    assert all(i["detail"] and i["meaning"] for i in items.values())
    rows = list(csv.DictReader(io.StringIO(site.gateway("quarantine", "list", "--format", "csv").stdout)))
    assert {r["path"]: r["reason"] for r in rows if r["kind"] == "unreadable"} == broken
    table = site.gateway("quarantine", "list").stdout
    for path in broken:
        assert path in table

    for _ in range(2):  # every run while they exist, not only the one that found them
        run = site.gateway("run")
        assert run.returncode == 0, run.stderr
        assert "2 files cannot be used (2 unreadable): `sfr-gateway quarantine list`" in run.stdout
        assert "{" not in run.stderr  # reasons in words, never a Python dict

    # fixed (re-exported whole) and gone (removed): the list empties, the summary says nothing more
    cut = next(p for p, r in broken.items() if r == "truncated")
    Path(cut).write_bytes((sample_export.root / Path(cut).relative_to(site.export.root)).read_bytes())
    Path(next(p for p, r in broken.items() if r == "not-dicom")).unlink()
    run = site.gateway("run", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["unusable_files"]["total"] == 0
    assert not [i for i in json.loads(site.gateway("quarantine", "list", "--json").stdout)["items"]
                if i["kind"] == "unreadable"]
    assert "cannot be used" not in site.gateway("run").stdout
