"""Residual-risk flags: what a human should look at even though the profile was applied.

Heuristics only (they change nothing): burned-in suspicion, unknown private creators, free
text kept that still holds digits, capitalised words or date-like patterns, unusual SOP
classes. The lists live in ``sfr_gateway/data/audit-risk.json`` (policy is data). A flag
names the attribute and the kind of pattern, never the value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from sfr_gateway.deid import tables
from sfr_gateway.deid.plan import Plan

_DIGITS = re.compile(r"\d")
_CAPITALISED = re.compile(r"(?<![^\W\d_])[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+")
_DATE_LIKE = re.compile(
    r"(?<!\d)(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)?\d{2}|(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}|"
    r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?!\d)"
    r"|\b\d{1,2}\s+(?:janv|f[ée]v|mars|avr|mai|juin|juil|ao[uû]t|sept|oct|nov|d[ée]c|jan|feb|apr|may|jun|jul|aug|sep|dec)\w*\.?\s+(?:19|20)\d{2}\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Flag:
    """One residual-risk flag of one instance."""

    kind: str
    path: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


@lru_cache(maxsize=1)
def settings() -> dict[str, Any]:
    """The packaged heuristics (``audit-risk.json``)."""
    text = resources.files("sfr_gateway.data").joinpath("audit-risk.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _known_creators() -> frozenset[str]:
    names = {c for _, c, _ in tables.safe_private()}
    names.update(c for _, c, _ in tables.tcia_private_kb())
    return frozenset(n.strip().upper() for n in names)


def known_creator(creator: str, plan: Plan) -> bool:
    """Whether a private creator is in Table E.3.10-1, TCIA's knowledge base or a site keep rule."""
    if creator.strip().upper() in _known_creators():
        return True
    return any(c.strip().upper() == creator.strip().upper() for (_, c, _), _ in plan.private.site_keep)


def usual_sop_class(uid: str) -> bool:
    """Whether a SOP class is one the collection expects (chest CT images)."""
    return uid in settings()["usual_sop_classes"]


def text_patterns(parts: list[str]) -> list[str]:
    """Which risky patterns a kept free-text value holds: digits, capitalised words, date-like."""
    text = " ".join(parts)
    found = []
    if _DIGITS.search(text):
        found.append("digits")
    if _CAPITALISED.search(text):
        found.append("capitalised words")
    if _DATE_LIKE.search(text):
        found.append("date-like pattern")
    return found


def free_text_flag(path: str, keyword: str, vr: str, parts: list[str]) -> Flag | None:
    """A flag for a kept or cleaned free-text value that still looks risky, else ``None``."""
    conf = settings()
    if vr not in conf["free_text_vrs"] or keyword in conf["free_text_exempt_keywords"] or not parts:
        return None
    if vr == "PN" and any(p.strip() for p in parts):
        return Flag("free-text", path, "person name kept")
    found = text_patterns(parts)
    if not found:
        return None
    return Flag("free-text", path, "kept text contains " + ", ".join(found))


def needs_burned_in_check(image_type: list[str]) -> bool:
    """Whether an image of this Image Type should state Burned In Annotation."""
    wanted = settings()["image_types_needing_burned_in_annotation"]
    return any(v.strip().upper() in wanted for v in image_type)


def image_flag(kind: str) -> bool:
    """Whether a flag kind deserves a thumbnail in the HTML report."""
    return kind in settings()["thumbnail_flag_kinds"]
