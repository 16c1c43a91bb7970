"""Retain Safe Private, element by element, for every vendor block our test data carries.

The oracle reads the packaged tables itself (``ps3.15-safe-private.json``, ``tcia-private-kb.json``)
and decides each private element by (group, private creator, element low byte), wherever its
block landed: every safe element is kept (a UID remapped, a date shifted where TCIA's knowledge
base says so), every other element of the same creator is removed, an element whose block has no
Private Creator is removed, and a Private Creator stays only when something of its block stays.
Issue 21: keeping every element of a creator, or matching the safe list on (group, creator)
while ignoring the element byte, passed the whole suite before these tests.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from sfr_gateway.deid import deidentify_file
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.private import PrivateDecision, PrivatePolicy, creator_of
from sfr_gateway.deid.pseudonym import patient_key
from sfr_gateway.errors import DicomError
from sfr_gateway.sample import iter_export, make_patients
from tests.deid_fixtures import KEYS_A, minimal_ct, plan_for, pz_for, reread, to_bytes


def _json(name: str) -> Any:
    return json.loads(resources.files("sfr_gateway.data").joinpath(name).read_text(encoding="utf-8"))


#: Table E.3.10-1 and the TCIA dispositions, parsed here, apart from the engine's own reader.
SAFE = {(int(r["group"], 16), r["private_creator"].strip(), int(r["element_in_block"], 16))
        for r in _json("ps3.15-safe-private.json")}
KB = {(int(k.split("|")[0], 16), k.split("|")[1], int(k.split("|")[2], 16)): v
      for k, v in _json("tcia-private-kb.json")["dispositions"].items()}

#: Every vendor block of the sample generator and of pydicom's test files that either table
#: names (checked below against the files themselves), plus the sample's own PHI block.
VENDOR_BLOCKS = [
    (0x0009, "GEMS_IDEN_01"), (0x0043, "GEMS_PARM_01"), (0x0029, "SFR_TEST_PHI"),  # sfr_gateway.sample
    (0x0009, "GEMS_GENIE_1"), (0x0011, "GEMS_GENIE_1"), (0x0013, "GEMS_GENIE_1"), (0x0009, "HMC"),
    (0x0009, "HMC - CT - ID"), (0x0011, "GEMS_PATI_01"), (0x0013, "CTP"), (0x0019, "GEMS_ACQU_01"),
    (0x0019, "SET WINDOW"), (0x0021, "GEMS_RELA_01"), (0x0023, "GEMS_STDY_01"), (0x0025, "GEMS_SERS_01"),
    (0x0027, "GEMS_IMAG_01"), (0x0029, "GEMS_IMPS_01"), (0x0029, "SIEMENS MEDCOM HEADER"),
    (0x0029, "SIEMENS MEDCOM OOG"), (0x0045, "GEMS_HELIOS_01"), (0x2001, "Philips Imaging DD 001"),
    (0x200D, "Philips US Imaging DD 017"), (0x200D, "Philips US Imaging DD 021"),
    (0x200D, "Philips US Imaging DD 023"), (0x200D, "Philips US Imaging DD 033"),
    (0x200D, "Philips US Imaging DD 042"), (0x200D, "Philips US Imaging DD 043"),
]
KB_PROFILE = 'name = "kb"\nextends = "sfr-covid"\n[private]\nuse_tcia_kb = true\n'
WIDE_PROFILE = """
name = "wide{kb}"
extends = "basic"
options = ["retain-safe-private", "retain-long-modified-dates"]
burned_in_rules = ""
[private]
use_tcia_kb = {kb}
"""


def expected(group: int, creator: str, low: int, *, use_kb: bool) -> str | None:
    """The oracle: None (removed) or how the kept value is written (k, h UID, o date, oi seconds)."""
    key = (group, creator, low)
    disposition = KB.get(key)
    transform = disposition if disposition in ("h", "o", "oi") else "k"
    if key in SAFE:
        return transform
    if use_kb and disposition in ("k", "h", "o", "oi"):
        return transform
    return None


@dataclass
class Private:
    """The private elements of one dataset (top level): by (group, creator, low byte), and orphans."""

    owned: dict[tuple[int, str, int], DataElement]
    orphans: set[int]
    creators: dict[int, str]  # creator tag -> name

    @classmethod
    def of(cls, ds: Dataset) -> Private:
        creators = {int(e.tag): str(e.value).strip() for e in ds if e.tag.is_private and 0x10 <= e.tag.element <= 0xFF}
        owned: dict[tuple[int, str, int], DataElement] = {}
        orphans: set[int] = set()
        for elem in ds:
            tag = int(elem.tag)
            if not elem.tag.is_private or tag in creators:
                continue
            creator = creators.get((tag & 0xFFFF0000) | (tag >> 8 & 0xFF)) if elem.tag.element >= 0x1000 else None
            if creator is None:
                orphans.add(tag)
            else:
                owned[(elem.tag.group, creator, elem.tag.element & 0xFF)] = elem
        return cls(owned, orphans, creators)


def _text(elem: DataElement) -> str:
    value = elem.value
    return value.decode("latin-1").strip(" \x00") if isinstance(value, bytes) else str(value).strip()


def _seconds(elem: DataElement) -> int:
    value = elem.value
    return int.from_bytes(value[:4], "little", signed=True) if isinstance(value, bytes) else int(value)


def _shift_date(text: str, days: int) -> str:
    """Independent date shift: the first 8 digits are the date, the rest stays."""
    day = dt.datetime.strptime(text[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return f"{day:%Y%m%d}{text[8:]}"


def check_private(src: Dataset, out: Dataset, plan: Plan, *, use_kb: bool) -> dict[str, int]:
    """Assert the oracle on every top-level private element of ``src``; counts by outcome."""
    before, after = Private.of(src), Private.of(out)
    pz = pz_for(plan, KEYS_A)

    def text(keyword: str) -> str:
        return str(src.get(keyword, "") or "")

    offset = pz.date_offset(patient_key(text("PatientID"), text("IssuerOfPatientID"), text("StudyInstanceUID")))
    counts = {"kept": 0, "removed": 0, "uid": 0, "date": 0, "orphans": 0}
    for key, elem in before.owned.items():
        where = f"({key[0]:04X},xx{key[2]:02X}) {key[1]}"
        want = expected(*key, use_kb=use_kb)
        if want is None:
            assert key not in after.owned, f"{where} must be removed"
            counts["removed"] += 1
            continue
        if elem.VR == "SQ":
            assert key in after.owned, f"{where} must be kept"
            counts["kept"] += 1
            continue
        original = _text(elem)
        if not original and want != "k":
            continue
        assert key in after.owned, f"{where} must be kept ({want})"
        got = after.owned[key]
        if want == "h":
            assert _text(got) == "\\".join(pz.uid(u.strip()) for u in original.split("\\")), where
            counts["uid"] += 1
        elif want == "o":
            assert _text(got) == _shift_date(original, offset), where
            counts["date"] += 1
        elif want == "oi":
            assert _seconds(got) == _seconds(elem) + offset * 86400, where
            counts["date"] += 1
        elif elem.VR in ("DA", "DT") and plan.dates_mode == "modified":
            assert _text(got) == _shift_date(original, offset), where
            counts["date"] += 1
        else:
            assert got.value == elem.value or _text(got) == original, where
            counts["kept"] += 1
    for tag in before.orphans:
        assert tag not in out, f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has no Private Creator: must be removed"
        counts["orphans"] += 1
    assert set(after.owned) <= set(before.owned), "a private element appeared"
    assert not after.orphans, "an output private element has no creator"
    kept_blocks = {(key[0], key[1]) for key in after.owned}
    for tag, name in after.creators.items():
        assert (tag >> 16, name) in kept_blocks, f"creator {name} of a block with nothing kept"
    return counts


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    folder = tmp_path_factory.mktemp("profiles")
    out = {"sfr-covid": plan_for("sfr-covid")}
    (folder / "kb.toml").write_text(KB_PROFILE, encoding="utf-8")
    out["kb"] = plan_for(str(folder / "kb.toml"))
    for kb in ("false", "true"):
        (folder / f"wide{kb}.toml").write_text(WIDE_PROFILE.format(kb=kb), encoding="utf-8")
        out[f"wide-{kb}"] = plan_for(str(folder / f"wide{kb}.toml"))
    return out


# ------------------------------------------------------------------ the sample generator's blocks

def _sample_slice() -> Dataset:
    return next(ds for rel, ds in iter_export(make_patients(1, seed=7), seed=7, rows=8, cols=8, slices=1)
                if "ser" in rel)


def test_sample_slice_safe_element_kept_the_rest_of_its_creators_removed(plans: dict[str, Plan]) -> None:
    src = _sample_slice()
    out = reread(deidentify_file(to_bytes(src), plans["sfr-covid"], KEYS_A).data)
    parm = out.private_block(0x0043, "GEMS_PARM_01")  # (0043,xx39) is on Table E.3.10-1
    assert list(parm[0x39].value) == ["1000", "0", "0", "0"]
    # GEMS_IDEN_01 (0009,xx01) is not on the table (TCIA would keep it): removed, and its creator
    assert not any(e.tag.group == 0x0009 for e in out), "GEMS_IDEN_01 (0009,xx01) must go with its creator"
    assert not any(e.tag.group == 0x0029 for e in out), "the site's PHI block must go"
    counts = check_private(src, out, plans["sfr-covid"], use_kb=False)
    assert counts["kept"] == 1 and counts["removed"] == 3


def test_sample_slice_with_the_tcia_knowledge_base(plans: dict[str, Plan]) -> None:
    src = _sample_slice()
    out = reread(deidentify_file(to_bytes(src), plans["kb"], KEYS_A).data)
    assert out.private_block(0x0009, "GEMS_IDEN_01")[0x01].value == src.private_block(0x0009, "GEMS_IDEN_01")[0x01].value
    counts = check_private(src, out, plans["kb"], use_kb=True)
    assert counts["kept"] == 2 and counts["removed"] == 2


# ------------------------------------------------------------- every element byte of every block

def _value_for(group: int, creator: str, low: int) -> tuple[str, object]:
    disposition = KB.get((group, creator, low))
    if disposition == "h":
        return "UI", f"1.2.840.113619.2.55.3.{low}.77"
    if disposition == "o":  # a date written as text in a text VR: only the KB's "o" shifts it
        return "LO", "20200315101010"
    if disposition == "oi":
        return "SL", 1584267010
    return "LO", f"V{low:02X} {creator[:8]}"


def _every_element(group: int, creator: str, slot: int) -> Dataset:
    """A CT with ``creator``'s block at ``slot`` holding all 256 elements, plus orphans."""
    ds = minimal_ct()
    block = ds.private_block(group, creator, create=True)
    if block.block_start >> 8 != slot:  # move the block to ``slot``: matching must not care where it is
        del ds[(group << 16) | (block.block_start >> 8)]
        ds.add_new((group << 16) | slot, "LO", creator)
        block = ds.private_block(group, creator)
    for low in range(256):
        vr, value = _value_for(group, creator, low)
        block.add_new(low, vr, value)
    free = next(b for b in range(0x10, 0x100) if b != slot)
    for low in (0x01, 0x39, 0x6F):  # a block with no Private Creator: orphans
        ds.add_new((group << 16) | (free << 8) | low, "LO", "ORPHAN PHI")
    ds.add_new((group << 16) | 0x0101, "LO", "NOT A PRIVATE ELEMENT NUMBER")  # below (gggg,1000)
    return ds


@pytest.mark.parametrize("use_kb", [False, True], ids=["safe-table", "safe-table+tcia"])
@pytest.mark.parametrize("group,creator", VENDOR_BLOCKS, ids=[f"{g:04X}-{c}" for g, c in VENDOR_BLOCKS])
def test_every_element_byte_of_every_vendor_block(plans: dict[str, Plan], group: int, creator: str,
                                                  use_kb: bool) -> None:
    plan = plans["kb" if use_kb else "sfr-covid"]
    slot = 0x10 + (sum(creator.encode()) % 0xE0)
    src = _every_element(group, creator, slot)
    out = reread(deidentify_file(to_bytes(src), plan, KEYS_A).data)
    counts = check_private(src, out, plan, use_kb=use_kb)
    keep = [low for low in range(256) if expected(group, creator, low, use_kb=use_kb)]
    assert counts["kept"] + counts["uid"] + counts["date"] == len(keep) and counts["removed"] == 256 - len(keep)
    assert len(keep) >= sum(1 for g, c, _ in SAFE if (g, c) == (group, creator))
    assert counts["orphans"] == 4
    if (group, creator) == (0x0043, "GEMS_PARM_01") and not use_kb:
        kept = out.private_block(group, creator)
        assert sorted(e.tag.element & 0xFF for e in out if e.tag.group == group and e.tag.element > 0xFF) == [
            0x27, 0x39, 0x6F]
        assert kept[0x39].value == "V39 GEMS_PAR"


def test_vendor_block_list_covers_the_test_data() -> None:
    """Every block that a table names, in the sample and in pydicom's files, is in VENDOR_BLOCKS."""
    found: set[tuple[int, str]] = set()
    datasets = [ds for _, ds in iter_export(make_patients(1), rows=8, cols=8, slices=1)]
    for path in get_testdata_files():
        try:
            datasets.append(pydicom.dcmread(path, force=True, stop_before_pixels=True))
        except Exception:  # noqa: BLE001,S112 - some bundled files are deliberately broken
            continue
    named = {(g, c) for g, c, _ in SAFE} | {(g, c) for g, c, _ in KB}
    for ds in datasets:
        for elem in ds:
            if elem.tag.is_private and 0x10 <= elem.tag.element <= 0xFF and isinstance(elem.value, str):
                block = (elem.tag.group, elem.value.strip())
                if block in named:
                    found.add(block)
    assert found <= set(VENDOR_BLOCKS), sorted(found - set(VENDOR_BLOCKS))


# ---------------------------------------------------------------------- pydicom's real files

def _real_files() -> list[Path]:
    wanted = {(g, c) for g, c in VENDOR_BLOCKS}
    files = []
    for path in sorted(get_testdata_files()):
        try:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        except Exception:  # noqa: BLE001,S112
            continue
        if any(e.tag.is_private and 0x10 <= e.tag.element <= 0xFF and (e.tag.group, str(e.value).strip()) in wanted
               for e in ds):
            files.append(Path(path))
    return files


@pytest.mark.parametrize("use_kb", [False, True], ids=["safe-table", "safe-table+tcia"])
def test_pydicom_files_with_vendor_blocks(plans: dict[str, Plan], use_kb: bool) -> None:
    plan = plans[f"wide-{'true' if use_kb else 'false'}"]
    totals = {"kept": 0, "removed": 0, "uid": 0, "date": 0, "orphans": 0}
    checked: list[str] = []
    for path in _real_files():
        try:
            result = deidentify_file(path, plan, KEYS_A)
        except DicomError:
            continue
        src = pydicom.dcmread(path)
        counts = check_private(src, reread(result.data), plan, use_kb=use_kb)
        totals = {k: totals[k] + counts[k] for k in totals}
        checked.append(path.name)
    assert len(checked) >= 10, checked
    assert totals["kept"] >= 10 and totals["removed"] >= 100, totals
    if use_kb:  # GEMS_IDEN_01 (0009,xx27) and (0009,xxE9): dates in seconds, shifted
        assert totals["date"] >= 1, totals


# ------------------------------------------------------------------ the policy object on its own

def test_decisions_name_their_rule() -> None:
    """Each decision says which rule decided (the audit and ``profile show`` print it)."""
    safe = PrivatePolicy(retain_safe=True, use_tcia_keep=False)  # no site override: the default
    kb = PrivatePolicy(retain_safe=True, use_tcia_keep=True)
    assert safe.decide(0x0043, None, 0x39) == PrivateDecision("d", "private element without Private Creator (removed)")
    assert safe.decide(0x0043, " GEMS_PARM_01 ", 0x39) == PrivateDecision(
        "k", "PS3.15 E.3.10-1 safe private (Retain Safe Private)")
    assert safe.decide(0x0043, "GEMS_PARM_01", 0x38) == PrivateDecision("d", "PS3.15 E.1-1 Private Attributes: Basic X")
    assert kb.decide(0x0043, "GEMS_PARM_01", 0x38) == PrivateDecision("k", "TCIA private tag KB disposition k")
    assert kb.decide(0x0043, "GEMS_PARM_01", 0x88) == PrivateDecision("h", "TCIA private tag KB disposition h")
    assert kb.decide(0x0009, "GEMS_IDEN_01", 0x27) == PrivateDecision("oi", "TCIA private tag KB disposition oi")
    assert kb.decide(0x0019, "GEMS_ACQU_01", 0x9D) == PrivateDecision("o", "TCIA private tag KB disposition o")
    assert PrivatePolicy(retain_safe=False, use_tcia_keep=True).decide(0x0043, "GEMS_PARM_01", 0x39).disposition == "d"
    with pytest.raises(AttributeError):  # frozen: one compiled plan is shared by every worker
        safe.retain_safe = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        safe.decide(0x0043, None, 0x39).disposition = "k"  # type: ignore[misc]


def test_site_overrides_keep_with_the_knowledge_base_transform() -> None:
    """A site's private_keep entry: ``k`` keeps the element, but a UID or a date the TCIA KB
    knows is still remapped or shifted; an explicit disposition wins; other elements are not touched."""
    site = PrivatePolicy(retain_safe=False, use_tcia_keep=False, site_keep=(
        ((0x0043, "GEMS_PARM_01", 0x88), "k"),  # TCIA: h
        ((0x0043, "GEMS_PARM_01", 0x01), "k"),  # TCIA: k
        ((0x0009, "GEMS_IDEN_01", 0x01), "d"),
        ((0x0045, "ACME_1", 0x22), "o"),
    ))
    rule = "site override: private keep"
    assert site.decide(0x0043, "GEMS_PARM_01", 0x88) == PrivateDecision("h", rule)
    assert site.decide(0x0043, "GEMS_PARM_01", 0x01) == PrivateDecision("k", rule)
    assert site.decide(0x0009, "GEMS_IDEN_01", 0x01) == PrivateDecision("d", rule)
    assert site.decide(0x0045, "ACME_1", 0x22) == PrivateDecision("o", rule)
    assert site.decide(0x0043, "GEMS_PARM_01", 0x02).disposition == "d"


def test_creator_of_reads_the_block_byte() -> None:
    creators = {0x10: "GEMS_PARM_01", 0x42: "ACME_1"}
    assert creator_of(creators, 0x0043, 0x1039) == "GEMS_PARM_01"
    assert creator_of(creators, 0x0043, 0x4239) == "ACME_1"
    assert creator_of(creators, 0x0043, 0x1139) is None  # no creator for block 0x11
    assert creator_of(creators, 0x0043, 0x0039) is None  # not a private data element number
    assert creator_of(creators, 0x0043, 0x0F39) is None
