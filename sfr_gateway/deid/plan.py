"""The compiled, immutable de-identification plan: per-tag rules and the profile's settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sfr_gateway.deid.private import PrivatePolicy
from sfr_gateway.deid.tables import IodTypes

CURVE_PATTERN = "(50xx,xxxx)"
OVERLAY_DATA_PATTERN = "(60xx,3000)"
OVERLAY_COMMENTS_PATTERN = "(60xx,4000)"


@dataclass(frozen=True)
class Rule:
    """The action code for one attribute and the rule that decided it."""

    code: str
    source: str
    text: str
    name: str


@dataclass(frozen=True)
class BurnRule:
    """A burned-in suspicion: all ``when`` (tag, regex) pairs must match."""

    reason: str
    when: tuple[tuple[int, re.Pattern[str]], ...]


@dataclass(frozen=True)
class Mask:
    """A known burned-in layout: boxes ``(x0, y0, x1, y1)`` (exclusive end) to blank."""

    name: str
    when: tuple[tuple[int, re.Pattern[str]], ...]
    regions: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """A profile compiled against PS3.15 Table E.1-1; built once per process and shared."""

    name: str
    options: tuple[str, ...]
    rules: dict[int, Rule]
    patterns: dict[str, Rule]
    private_rule: Rule | None
    private: PrivatePolicy
    dates_mode: str
    offset_range: tuple[int, int]
    max_age: int
    sop_allow: frozenset[str]
    burned_in: tuple[BurnRule, ...]
    masks: tuple[Mask, ...]
    pseudonyms: dict[int, str]
    phi_words: tuple[int, ...]
    phi_phrases: tuple[int, ...]
    phi_places: tuple[int, ...]
    phi_numbers: tuple[int, ...]
    phi_stopwords: frozenset[str]
    iod_types: dict[str, IodTypes]
    graphics: dict[int, Rule] = field(default_factory=dict)
    _resolved: dict[tuple[tuple[int, ...], str, Rule], tuple[str, Rule]] = field(default_factory=dict, repr=False)

    def rule_for(self, tag: int) -> Rule | None:
        """The rule of a public tag (including curve and overlay patterns), or ``None``."""
        rule = self.rules.get(tag)
        if rule is not None:
            return rule
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 0xFF00 == 0x5000 and group % 2 == 0:
            return self.patterns.get(CURVE_PATTERN)
        if group & 0xFF00 == 0x6000 and group % 2 == 0:
            if elem == 0x3000:
                return self.patterns.get(OVERLAY_DATA_PATTERN)
            if elem == 0x4000:
                return self.patterns.get(OVERLAY_COMMENTS_PATTERN)
        return None

    def graphics_rule(self, group: int) -> Rule:
        """The rule for every element of curve group 50xx or overlay group 60xx (``group``)."""
        return self.graphics[group & 0xFF00]

    def attribute_type(self, path: tuple[int, ...], sop_class: str) -> tuple[int, str]:
        """(Type, IOD name) of the attribute at ``path`` (tags from the top level) in the IOD of
        ``sop_class``: 1 (1C), 2 (2C) or 3; 3 when the IOD does not list it. A SOP class without
        a table of its own uses the strongest Type of the path in any admitted image IOD."""
        iod = self.iod_types.get(sop_class) or self.iod_types[""]
        return iod.types.get(path, 3), iod.iod

    def resolve(self, rule: Rule, path: tuple[int, ...], sop_class: str) -> tuple[str, Rule]:
        """Resolve a combined code (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) by the attribute's IOD Type;
        return the code and the rule, whose text then also names the IOD Type resolution.

        Type 1 -> D (U for X/Z/U*), Type 2 -> Z, Type 3 or unlisted -> the first code.
        """
        code = rule.code
        if "/" not in code:
            return code, rule
        key = (path, sop_class, rule)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        kind, iod = self.attribute_type(path, sop_class)
        parts = code.split("/")
        if kind == 1:
            want = "U" if "U*" in parts else "D"
        elif kind == 2:
            want = "Z"
        else:
            want = parts[0]
        if want not in [p.rstrip("*") for p in parts]:
            want = parts[0] if kind == 3 else parts[-1].rstrip("*")
        listed = f"Type {kind}" if path in (self.iod_types.get(sop_class) or self.iod_types[""]).types else "not listed"
        why = f"IOD Type resolution: {listed} in {iod} -> {want}"
        out = self._resolved[key] = (want, Rule(rule.code, rule.source, f"{rule.text}; {why}", rule.name))
        return out

    @property
    def clean_pixel_data(self) -> bool:
        """Whether the Clean Pixel Data option is on (masks may be applied)."""
        return "clean-pixel-data" in self.options

    @property
    def clean_descriptors(self) -> bool:
        """Whether free text is cleaned of PHI tokens."""
        return "clean-descriptors" in self.options or "clean-structured-content" in self.options
