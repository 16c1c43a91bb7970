"""The one cached accessor of the packaged PS3.15 reference data (``sfr_gateway/data``).

Every table is read once per process through :func:`functools.lru_cache` and returned as
immutable-by-convention structures. See ``sfr_gateway/data/README.md`` for provenance.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

PS315_EDITION = "2026d"
SAFE_PRIVATE_EDITION = "2026a"

#: Table E.1-1 option columns, in the standard's order.
OPTION_COLUMNS: tuple[str, ...] = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)

_TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")


@dataclass(frozen=True)
class TableRow:
    """One row of PS3.15 Table E.1-1."""

    name: str
    tag_text: str
    tag: int | None
    is_pattern: bool
    retired: bool
    in_std_comp_iod: bool
    codes: tuple[tuple[str, str], ...]

    def code(self, column: str) -> str:
        """Return the code of ``column`` (``basic_profile`` or an option column), or ``""``."""
        return dict(self.codes).get(column, "")


def _load_json(name: str) -> Any:
    return json.loads(resources.files("sfr_gateway.data").joinpath(name).read_text(encoding="utf-8"))


def parse_tag(text: str) -> int | None:
    """Parse ``"(0010,0010)"`` to an int tag; ``None`` for pattern spellings."""
    match = _TAG.match(text.strip().upper())
    if not match:
        return None
    return int(match.group(1) + match.group(2), 16)


@lru_cache(maxsize=1)
def table_e1_1() -> tuple[TableRow, ...]:
    """All 657 rows of Table E.1-1 (2026d), in the standard's order."""
    rows = []
    for raw in _load_json("ps3.15-table-e1-1.json"):
        codes = tuple((col, raw[col]) for col in ("basic_profile", *OPTION_COLUMNS))
        rows.append(
            TableRow(
                name=raw["name"],
                tag_text=raw["tag"],
                tag=None if raw["is_pattern"] else parse_tag(raw["tag"]),
                is_pattern=raw["is_pattern"],
                retired=raw["retired"],
                in_std_comp_iod=raw["in_std_comp_iod"],
                codes=codes,
            )
        )
    return tuple(rows)


@lru_cache(maxsize=1)
def safe_private() -> frozenset[tuple[int, str, int]]:
    """Table E.3.10-1 as ``(group, private creator, element low byte)`` triples."""
    return frozenset(
        (int(r["group"], 16), r["private_creator"].strip(), int(r["element_in_block"], 16))
        for r in _load_json("ps3.15-safe-private.json")
    )


@lru_cache(maxsize=1)
def tcia_private_kb() -> dict[tuple[int, str, int], str]:
    """TCIA private tag KB: ``(group, creator, low byte)`` -> disposition (k, d, h, o, oi)."""
    data = _load_json("tcia-private-kb.json")
    out: dict[tuple[int, str, int], str] = {}
    for key, disp in data["dispositions"].items():
        group, creator, low = key.split("|")
        out[(int(group, 16), creator, int(low, 16))] = disp
    return out


@lru_cache(maxsize=1)
def action_codes() -> dict[str, str]:
    """Table E.1-1a: action code -> definition."""
    return {r["code"]: r["definition"] for r in _load_json("ps3.15-action-codes.json")}


@lru_cache(maxsize=1)
def options() -> dict[str, dict[str, Any]]:
    """Option name (``retain-safe-private``...) -> ``{column, code, meaning}`` (CID 7050)."""
    return {k: v for k, v in _load_json("options.json").items() if not k.startswith("_")}


@lru_cache(maxsize=1)
def pixel_data_iods() -> frozenset[str]:
    """SOP Class UIDs whose IOD requires Pixel Data (the Image Pixel module is Mandatory, PS3.3
    C.7.6.3): an instance of one without Pixel Data is not an image (scan and deidentify hold it)."""
    return frozenset(_load_json("pixel-data-iods.json")["sop_classes"])


_FUNCTIONAL_GROUPS = (0x52009229, 0x52009230)  # Shared, Per-frame Functional Groups Sequence


@dataclass(frozen=True)
class IodTypes:
    """Attribute Types of one IOD: tag path (top level first) -> 1, 2 or 3 (1C/2C count as 1/2)."""

    iod: str
    types: dict[tuple[int, ...], int]


@lru_cache(maxsize=1)
def iod_types() -> dict[str, IodTypes]:
    """SOP Class UID -> :class:`IodTypes` for the image IODs the profiles admit (PS3.3).

    A functional-group macro path (``fg:`` in the file) is listed under both the Shared and
    the Per-frame Functional Groups Sequence. The key ``""`` holds, for any other SOP class,
    the strongest Type each path has in any of these IODs."""
    out: dict[str, IodTypes] = {}
    strongest: dict[tuple[int, ...], int] = {}
    for uid, entry in _load_json("iod-types.json")["sop_classes"].items():
        types: dict[tuple[int, ...], int] = {}
        for text, kind in entry["types"].items():
            macro = text.startswith("fg:")
            path = tuple(parse_tag(t) or 0 for t in text.removeprefix("fg:").split("/"))
            value = int(kind[0])
            for full in ((fg, *path) for fg in _FUNCTIONAL_GROUPS) if macro else (path,):
                types[full] = min(value, types.get(full, 3))
                strongest[full] = min(value, strongest.get(full, 3))
        out[uid] = IodTypes(entry["iod"], types)
    out[""] = IodTypes("any admitted image IOD", strongest)
    return out
