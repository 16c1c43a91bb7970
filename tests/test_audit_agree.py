"""Audit and deidentify agree: every change the audit announces is what deidentify did, and nothing else.

Both run on the same synthetic export; the de-identified files are re-read and compared,
attribute by attribute at every depth, with the audit's (revealed) records; the sources are
re-read too, and every announced "before" value is what the source holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from audit_fixtures import KEYS, SECRET, audit_json, plan_for
from pydicom.dataset import Dataset

from sfr_gateway.deid.folder import RunSpec, run
from sfr_gateway.sample import SampleExport

_BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def _name(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return (keyword_for_tag(tag) if not (tag >> 16) & 1 else "") or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def output_elements(ds: Dataset, prefix: str = "") -> dict[str, Any]:
    """Path -> element of every element of ``ds`` at every depth (the audit's path spelling)."""
    out: dict[str, Any] = {}
    for elem in ds:
        path = prefix + _name(int(elem.tag))
        out[path] = elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                out.update(output_elements(item, f"{path}[{i}]."))
    return out


def as_parts(elem: Any) -> list[str] | str | int:
    """An output value in the form the audit reveals (independent conversion)."""
    value = elem.value
    if elem.VR == "SQ":
        return len(value)
    if isinstance(value, bytes):
        if elem.VR in _BINARY:
            return "hex:" + value[:64].hex() + ("..." if len(value) > 64 else "")
        value = value.decode("utf-8", "replace")
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v).rstrip(" \x00") for v in value]
    else:
        parts = [str(value).rstrip(" \x00")]
    return [] if parts == [""] else parts


def announced(v: dict[str, Any] | None) -> list[str] | str | int | None:
    """A revealed audit value in the same form as :func:`as_parts`."""
    if v is None:
        return None
    if v["kind"] == "sequence":
        return int(v["length"])
    value = v["value"]
    if isinstance(value, str) and value.startswith("hex:"):
        return value
    return [] if value == "" else [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("profile,options", [("sfr-covid", ()), ("basic", ("retain-uids", "retain-device-identity"))])
def test_audit_announces_exactly_what_deidentify_does(sample_export: SampleExport, tmp_path: Path,
                                                      profile: str, options: tuple[str, ...]) -> None:
    plan = plan_for(profile, *options)
    report = audit_json([sample_export.root], plan, reveal=True)
    out, quarantine = tmp_path / "out", tmp_path / "quarantine"
    spec = RunSpec(profile=profile, options=options, site_overrides=(), site_private_keep=(), output=out,
                   quarantine=quarantine, keep_copies=False, secret=SECRET, site_id=KEYS.site_id)
    summary = run([sample_export.root], spec)

    released = [i for i in report["instances"] if i["status"] == "released"]
    assert len(released) == summary.released > 0
    assert len(report["instances"]) == summary.seen == len(sample_export.files)

    # Quarantine: same files, same reasons.
    refused = {json.loads(p.read_text())["source"]: json.loads(p.read_text())["reason"] for p in quarantine.glob("*.json")}
    assert {i["file"]: i["quarantine"]["reason"] for i in report["instances"] if i["status"] == "quarantined"} == refused

    outputs = {p.relative_to(out) for p in out.rglob("*.dcm")}
    assert outputs == {Path(i["patient"], i["study"], i["series"], i["instance"] + ".dcm") for i in released}

    checked = 0
    for inst in released:
        source = output_elements(pydicom.dcmread(inst["file"]))
        for rec in inst["attributes"]:  # "before" is what the source holds
            if rec["before"] is not None and not (rec["path"] == "PixelData" and rec["action"] == "cleaned"):
                assert as_parts(source[rec["path"]]) == announced(rec["before"]), (inst["file"], rec["path"])
            elif rec["action"] == "added":
                assert rec["before"] is None
        ds = pydicom.dcmread(out / inst["patient"] / inst["study"] / inst["series"] / f"{inst['instance']}.dcm")
        got = output_elements(ds)
        final: dict[str, dict[str, Any]] = {}
        for rec in inst["attributes"]:
            final[rec["path"]] = rec  # records are in the engine's order: the last one decides
        present = {p for p, r in final.items() if r["action"] != "removed"}
        added_seqs = [p for p, r in final.items() if r["action"] == "added" and r["vr"] == "SQ"]
        # an added sequence (De-identification Method Code Sequence) is announced with its item count
        present |= {p for p in got if any(p.startswith(a + "[") for a in added_seqs)}
        assert set(got) == present, (inst["file"], sorted(set(got) ^ present))
        for path, rec in final.items():
            action = rec["action"]
            if action == "removed":
                continue
            value = as_parts(got[path])
            if action == "emptied":
                assert value in ([], 0), (path, rec)
            else:
                assert value == announced(rec["after"]), (inst["file"], path, action)
            if action == "kept":
                assert rec["before"] == rec["after"], path
            checked += 1
    assert checked > 1000
