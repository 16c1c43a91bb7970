"""Eligibility of one indexed instance for the national collection, with the reason when not.

Rules come from ``config.SelectionRules`` (data), never from code: modality, chest by body part
or description words, the collection date window, and series kinds never released as images.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..home.config import SelectionRules

# SOP Class UID prefixes by kind (facts of PS3.4 Annex B).
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_PR_PREFIX = "1.2.840.10008.5.1.4.1.1.11."
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
_IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
}

EXCLUSION_REASONS = {
    "modality": "modality is not one the collection takes",
    "not-chest": "no chest body part or chest words in the descriptions",
    "no-study-date": "study date missing or unreadable",
    "outside-date-window": "study date outside the collection window",
    "localizer": "localizer / scout image",
    "dose-report": "dose report or dose screen",
    "secondary-capture": "secondary capture or screen capture",
    "structured-report": "structured report",
    "presentation-state": "presentation state",
    "not-an-image": "SOP class is not a CT image",
}


@dataclass(frozen=True)
class InstanceFacts:
    """The header facts selection looks at (all optional: headers are often incomplete)."""

    sop_class_uid: str = ""
    modality: str = ""
    body_part: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    protocol_name: str = ""
    image_type: str = ""  # backslash-joined, upper case


def _words(text: str) -> set[str]:
    return set(re.split(r"[^A-Z0-9]+", text.upper())) - {""}


def series_kind(f: InstanceFacts) -> str | None:
    """The excluded series kind this instance belongs to, if any."""
    image_type = {v.strip() for v in f.image_type.upper().split("\\")}
    descriptions = f"{f.series_description} {f.protocol_name}".upper()
    if f.sop_class_uid == _DOSE_SR or "DOSE" in image_type or "DOSE REPORT" in descriptions \
            or "DOSE INFO" in descriptions:
        return "dose-report"
    if f.sop_class_uid.startswith(_SR_PREFIX):
        return "structured-report"
    if f.sop_class_uid.startswith(_PR_PREFIX):
        return "presentation-state"
    if f.sop_class_uid.startswith(_SC_PREFIX) or "SCREEN SAVE" in image_type or "SECONDARY" in image_type:
        return "secondary-capture"
    if image_type & {"LOCALIZER", "SCOUT"} or _words(descriptions) & {"TOPOGRAMME", "TOPOGRAM", "SCOUT", "SCANOGRAM", "SURVIEW"}:
        return "localizer"
    return None


def is_chest(f: InstanceFacts, rules: SelectionRules) -> bool:
    """Chest by Body Part Examined or by a chest word in the study/series/protocol descriptions."""
    if f.body_part.strip().upper() in {"CHEST", "THORAX", "LUNG", "CHEST_ABDOMEN", "CHESTABDOMEN",
                                       "CHEST_ABDOMEN_PELVIS", "CHESTABDPELVIS", "THORAXABDOMEN"}:
        return True
    text = f" {f.study_description} {f.series_description} {f.protocol_name} ".upper()
    words = _words(text)
    for word in rules.chest_words:
        if " " in word:
            if word in text:
                return True
        elif word in words:
            return True
    return False


def parse_da(value: str) -> dt.date | None:
    """A DA value (YYYYMMDD, or the old YYYY.MM.DD) as a date, else None."""
    digits = value.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def eligibility(f: InstanceFacts, rules: SelectionRules, *, sop_class_known: bool = True) -> str | None:
    """None when eligible, else the exclusion reason (a key of ``EXCLUSION_REASONS``).

    ``sop_class_known=False``: the facts come from a series-level query (``pull``), which names no
    SOP Class; every other rule applies, and the instances are judged again when they arrive.
    """
    kind = series_kind(f)
    if kind in rules.excluded_kinds:
        return kind
    if f.modality.upper() not in rules.modalities:
        return "modality"
    if sop_class_known and f.sop_class_uid not in _IMAGE_CLASSES:
        return "not-an-image"
    if not is_chest(f, rules):
        return "not-chest"
    if rules.date_from or rules.date_to:
        date = parse_da(f.study_date)
        if date is None:
            return "no-study-date"
        if (rules.date_from and date < rules.date_from) or (rules.date_to and date > rules.date_to):
            return "outside-date-window"
    return None
