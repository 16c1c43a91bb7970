"""What a compiled plan does to each attribute, for ``profile show`` and the docs."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag

from sfr_gateway.deid import tables
from sfr_gateway.deid.plan import Plan, Rule
from sfr_gateway.deid.rules import BINARY_RULE, EMPTY_RULE, ENGINE_RULES
from sfr_gateway.deid.values import BINARY, dictionary_vr

ACTION_WORDS = {
    "X": "remove", "Z": "empty", "D": "dummy / keyed value", "K": "keep", "C": "clean",
    "U": "keyed UID", "Z/D": "empty or dummy (IOD Type)", "X/Z": "remove or empty (IOD Type)",
    "X/D": "remove or dummy (IOD Type)", "X/Z/D": "remove, empty or dummy (IOD Type)",
    "X/Z/U*": "remove, empty or remap contained UIDs (IOD Type)",
}


def _engine_words(plan: Plan, tag: int | None, code: str) -> str:
    """What the engine's own rules (``deid.rules``) add to a row: the IOD Type resolution of a
    combined code in each admitted SOP class, and the binary-value rule for C or K."""
    if tag is None:
        return ""
    if "/" in code:
        by_code: dict[str, list[str]] = {}
        for sop in sorted(plan.sop_allow):
            resolved, _ = plan.resolve(Rule(code, "", "", ""), (tag,), sop)
            by_code.setdefault(resolved, []).append(plan.attribute_type((tag,), sop)[1])
        return "; IOD Type resolution: " + "; ".join(f"{c} in {', '.join(iods)}" for c, iods in sorted(by_code.items()))
    if code in ("C", "K") and dictionary_vr(tag) in BINARY:
        return f"; {BINARY_RULE}: removed (a zero dummy where Type 1)"
    if code == "D":
        return f"; {EMPTY_RULE}"
    return ""


def describe(plan: Plan) -> dict[str, Any]:
    """Rows (one per Table E.1-1 row or override) plus the private and pixel policies."""
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for row in tables.table_e1_1():
        if row.tag is not None:
            rule = plan.rules[row.tag]
            seen.add(row.tag)
            keyword = keyword_for_tag(row.tag) or ""
        elif row.tag_text.startswith("(gggg"):
            rule = plan.private_rule  # type: ignore[assignment]
            keyword = ""
        else:
            rule = plan.patterns[row.tag_text]
            keyword = ""
        code = rule.code
        if row.tag_text.startswith("(gggg") and plan.private.retain_safe:
            code = "C"
        rows.append({"tag": row.tag_text, "keyword": keyword, "name": row.name, "action": code,
                     "meaning": ACTION_WORDS.get(code, code), "rule": rule.text + _engine_words(plan, row.tag, code)})
    for tag, rule in sorted(plan.rules.items()):
        if tag not in seen:
            rows.append({"tag": f"({tag >> 16:04X},{tag & 0xFFFF:04X})", "keyword": keyword_for_tag(tag) or "",
                         "name": rule.name, "action": rule.code, "meaning": ACTION_WORDS.get(rule.code, rule.code),
                         "rule": rule.text})
    return {
        "profile": plan.name,
        "ps315_edition": tables.PS315_EDITION,
        "safe_private_edition": tables.SAFE_PRIVATE_EDITION,
        "options": list(plan.options),
        "dates": {"mode": plan.dates_mode, "offset_days": list(plan.offset_range)},
        "max_age_years": plan.max_age,
        "private": {
            "retain_safe_private": plan.private.retain_safe,
            "use_tcia_kb": plan.private.use_tcia_keep,
            "site_keep": [{"group": f"{g:04X}", "creator": c, "element": f"{e:02X}", "disposition": d}
                          for (g, c, e), d in plan.private.site_keep],
        },
        "sop_classes": sorted(plan.sop_allow),
        "burned_in_rules": [r.reason for r in plan.burned_in],
        "masks": [m.name for m in plan.masks],
        "attributes": rows,
        "engine_rules": [{"rule": name, "what": what} for name, what in ENGINE_RULES],
    }


def to_markdown(info: dict[str, Any]) -> str:
    """A Markdown rendering of :func:`describe`."""
    lines = [
        f"# Profile `{info['profile']}` (PS3.15 {info['ps315_edition']})", "",
        f"Options: {', '.join(info['options']) or 'none (Basic profile alone)'}", "",
        f"Dates: {info['dates']['mode']}; private: retain safe = {info['private']['retain_safe_private']}", "",
        "| tag | keyword | attribute | action | rule |", "|---|---|---|---|---|",
    ]
    for r in info["attributes"]:
        lines.append(f"| {r['tag']} | {r['keyword']} | {r['name']} | {r['action']} | {r['rule']} |")
    lines += ["", "## Engine rules", "", "| rule | what it does |", "|---|---|"]
    lines += [f"| {r['rule']} | {r['what']} |" for r in info["engine_rules"]]
    return "\n".join(lines) + "\n"
