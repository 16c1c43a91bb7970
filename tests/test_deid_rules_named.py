"""``profile show`` and the audit name the rule that decided each case of issue 15: text cleaned
of the instance's identifying values, a binary value under C/K, Clean Graphics, duplicate SOP
Instance UIDs, IOD Type resolution, UN read with its dictionary VR, an empty value kept empty."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom

from sfr_gateway.audit import AuditSettings, iter_audits
from sfr_gateway.deid.rules import BINARY_RULE, DUPLICATE_RULE, EMPTY_RULE, TEXT_CLEAN, UN_READ
from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, write_file
from tests.independent_data import data_file


def _rows(cli, *args: str) -> tuple[dict[str, str], list[str]]:
    result = cli("profile", "show", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    return {r["keyword"] or r["tag"]: r["rule"] for r in info["attributes"]}, [r["rule"] for r in info["engine_rules"]]


def test_profile_show_names_each_rule(cli) -> None:
    rows, engine = _rows(cli, "basic", "--option", "clean-descriptors")
    assert "IOD Type resolution: D in enhanced-ct-image, enhanced-mr-image" in rows["ContentDate"]
    assert "IOD Type resolution" in rows["DeviceSerialNumber"] and "Z in" in rows["AcquisitionContextSequence"]
    assert BINARY_RULE in rows["MakerNote"] and BINARY_RULE in rows["DeviceSettingDescription"]
    assert "whole overlay (60xx) group is removed" in rows["(60xx,3000)"]
    assert {"IOD Type resolution", UN_READ, BINARY_RULE, EMPTY_RULE, "Clean Graphics", TEXT_CLEAN,
            DUPLICATE_RULE} <= set(engine)
    covid, _ = _rows(cli, "sfr-covid")
    assert EMPTY_RULE in covid["AccessionNumber"]
    assert "Clean Graphics: the whole overlay (60xx) group is removed" in covid["(60xx,3000)"]
    assert BINARY_RULE in covid["CertifiedTimestamp"]
    markdown = cli("profile", "show", "sfr-covid", "--format", "markdown").stdout
    assert "## Engine rules" in markdown and UN_READ in markdown
    table = cli("profile", "show", "sfr-covid").stdout
    assert "Engine rules" in table


def test_the_audit_names_each_rule(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ds = minimal_ct(name="DUPONT-LEFÈVRE^Marie")
    ds.PatientAddress = "12 rue des Lilas, 33600 Pessac"
    ds.PatientComments = "Patiente DUPONT-LEFÈVRE, domicile Pessac"
    ds.AccessionNumber = ""
    ds.add_new("CertifiedTimestamp", "OB", b"\x30\x82DUPONT")
    overlay = pydicom.dcmread(data_file("examples_overlay.dcm"))
    for elem in overlay:
        if elem.tag.group == 0x6000:
            ds.add(elem)
    write_file(src / "a.dcm", ds)
    shutil.copyfile(src / "a.dcm", src / "b.dcm")  # a copy: released once
    other = minimal_ct(name="DUPONT-LEFÈVRE^Marie")
    other.SeriesDescription = "another object under the same UID"
    write_file(src / "c.dcm", other)  # a conflict
    shutil.copyfile(data_file("explicit_VR-UN.dcm"), src / "d.dcm")
    audits = {Path(a.file).name: a for a in iter_audits([src], plan_for("sfr-covid"), KEYS_A,
                                                          AuditSettings(thumbnails=False))}
    rules = {r.keyword: r.rule for r in audits["a.dcm"].attributes}
    assert TEXT_CLEAN in rules["PatientComments"]
    assert BINARY_RULE in rules["CertifiedTimestamp"]
    assert EMPTY_RULE in rules["AccessionNumber"]
    assert any("Clean Graphics" in r.rule for r in audits["a.dcm"].attributes if r.tag.startswith("(6000"))
    assert audits["b.dcm"].status == "duplicate"
    assert any(f.kind == "duplicate-sop-instance" and str(src / "a.dcm") in f.detail and DUPLICATE_RULE in f.detail
               for f in audits["b.dcm"].flags)
    assert audits["c.dcm"].status == "quarantined"
    assert audits["c.dcm"].quarantine is not None and audits["c.dcm"].quarantine["other"] == str(src / "a.dcm")
    assert "different: AccessionNumber" in audits["c.dcm"].quarantine["detail"]
    assert DUPLICATE_RULE in audits["c.dcm"].quarantine["detail"]  # the first difference, by keyword
    un = {r.keyword: r.rule for r in audits["d.dcm"].attributes}
    assert UN_READ in un["StudyDate"]
    enhanced = plan_for("basic")
    [emri] = list(iter_audits([data_file("emri_small_jpeg_ls_lossless.dcm")], enhanced, KEYS_A,
                              AuditSettings(thumbnails=False)))
    assert any("IOD Type resolution: Type 1 in enhanced-mr-image -> D" in r.rule for r in emri.attributes
               if r.keyword == "ContentDate")
