"""De-identification profiles: load ``profiles/*.toml``, validate at load, compile to a plan.

A profile names PS3.15 options and overrides; :func:`compile_plan` turns it, with Table
E.1-1, into a per-tag :class:`Plan` (cached). Every problem is reported at load time, before
any file is read, with a message saying how to fix it (:class:`ProfileError`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.uid import UID_dictionary

from sfr_gateway.deid import tables
from sfr_gateway.deid.plan import CURVE_PATTERN, OVERLAY_COMMENTS_PATTERN, OVERLAY_DATA_PATTERN, BurnRule, Mask, Plan, Rule
from sfr_gateway.deid.private import PrivatePolicy
from sfr_gateway.deid.pseudonym import PURPOSE_PATTERN, RESERVED_PURPOSES
from sfr_gateway.deid.rules import GRAPHICS_BASIC, GRAPHICS_REMOVED
from sfr_gateway.deid.text import normalize
from sfr_gateway.errors import ProfileError

DEFAULT_PROFILE = "sfr-covid"
_TOP_KEYS = {
    "name", "extends", "description", "ps315_edition", "options", "burned_in_rules", "sop_classes",
    "dates", "patient", "private", "pseudonyms", "phi_tokens", "override", "private_keep", "mask",
}
_OVERRIDE_KEYS = {"keyword", "tag", "action", "reason"}
_DISPOSITIONS = {"k", "h", "o", "oi"}


@dataclass(frozen=True)
class Profile:
    """A validated profile: the merged TOML of the profile and what it extends, plus extras."""

    name: str
    data: dict[str, Any] = field(hash=False, compare=False)
    options: tuple[str, ...]
    site_overrides: tuple[tuple[tuple[str, Any], ...], ...] = ()
    site_private_keep: tuple[tuple[tuple[str, Any], ...], ...] = ()


def available_profiles() -> list[str]:
    """Names of the packaged profiles."""
    root = resources.files("sfr_gateway.profiles")
    return sorted(
        p.name[:-5]
        for p in root.iterdir()
        if p.name.endswith(".toml") and p.name != "burned-in.toml"
    )


def _read_toml(name_or_path: str) -> tuple[str, dict[str, Any], Path | None]:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, where = path.read_text(encoding="utf-8"), path
    else:
        res = resources.files("sfr_gateway.profiles").joinpath(f"{name_or_path}.toml")
        if not res.is_file():
            raise ProfileError(
                f"unknown profile {name_or_path!r}: choose one of {', '.join(available_profiles())} "
                "or give the path of a .toml file"
            )
        text, where = res.read_text(encoding="utf-8"), None
    try:
        return str(name_or_path), tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name_or_path!r} is not valid TOML: {exc}") from None


def _merged(name: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], Path | None]:
    if name in seen:
        raise ProfileError(f"profile {name!r} extends itself (cycle {' -> '.join(seen + (name,))})")
    _, data, where = _read_toml(name)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(
            f"profile {name!r}: unknown key(s) {sorted(unknown)}; allowed keys are {sorted(_TOP_KEYS)}"
        )
    parent = data.get("extends")
    if not parent:
        return data, where
    base, _ = _merged(str(parent), seen + (name,))
    merged = dict(base)
    for key, value in data.items():
        if key in ("override", "private_keep", "mask"):
            merged[key] = list(base.get(key, [])) + list(value)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged, where


def _freeze(items: Any) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in d.items())) for d in items or ())


def load_profile(
    name: str = DEFAULT_PROFILE,
    *,
    options: tuple[str, ...] | list[str] = (),
    site_overrides: list[dict[str, Any]] | None = None,
    site_private_keep: list[dict[str, Any]] | None = None,
) -> Profile:
    """Load and validate profile ``name`` (packaged name or ``.toml`` path).

    ``options`` are added to the profile's own; ``site_overrides`` (``[[override]]`` tables)
    and ``site_private_keep`` come from HOME/config.toml. Raises :class:`ProfileError`.
    """
    data, _ = _merged(name)
    all_options = tuple(dict.fromkeys([*data.get("options", []), *options]))
    profile = Profile(
        name=str(data.get("name", name)),
        data=data,
        options=all_options,
        site_overrides=_freeze(site_overrides),
        site_private_keep=_freeze(site_private_keep),
    )
    compile_plan(profile)  # validation happens here, at load time
    return profile


def _tag_of(entry: dict[str, Any], where: str) -> int:
    if "tag" in entry:
        tag = tables.parse_tag(str(entry["tag"]))
        if tag is None:
            raise ProfileError(f"{where}: tag {entry['tag']!r} is not of the form \"(0010,0010)\"")
        return tag
    if "keyword" in entry:
        tag = tag_for_keyword(str(entry["keyword"]))
        if tag is None:
            raise ProfileError(
                f"{where}: unknown keyword {entry['keyword']!r}; use a DICOM keyword such as "
                "'PatientName' or give tag = \"(gggg,eeee)\""
            )
        return int(tag)
    raise ProfileError(f"{where}: give keyword = \"...\" or tag = \"(gggg,eeee)\"")


def _purpose(purpose: Any, keyword: str, pname: str) -> str:
    """A [pseudonyms] purpose: its own HMAC domain, never one the gateway derives itself."""
    where = f"profile {pname!r} [pseudonyms] {keyword}"
    if not isinstance(purpose, str) or not PURPOSE_PATTERN.match(purpose):
        raise ProfileError(f"{where}: purpose {purpose!r} must be 1-32 lower-case letters, digits or '-', "
                           "starting with a letter (e.g. \"accession\")")
    if purpose in RESERVED_PURPOSES:
        raise ProfileError(f"{where}: purpose {purpose!r} is reserved (the gateway derives "
                           f"{', '.join(sorted(RESERVED_PURPOSES))} itself); name another, e.g. \"{keyword.lower()}\"")
    return purpose


def _sop_uids(names: list[str], where: str) -> frozenset[str]:
    by_keyword = {v[4]: k for k, v in UID_dictionary.items() if v[4]}
    out = set()
    for item in names:
        if item in by_keyword:
            out.add(by_keyword[item])
        elif item in UID_dictionary:
            out.add(item)
        else:
            raise ProfileError(f"{where}: unknown SOP Class {item!r}; use a pydicom UID keyword such as 'CTImageStorage'")
    return frozenset(out)


def _when(entry: dict[str, Any], where: str) -> tuple[tuple[int, re.Pattern[str]], ...]:
    when = entry.get("when")
    if not isinstance(when, dict) or not when:
        raise ProfileError(f"{where}: needs a non-empty `when` table of Keyword = 'regex'")
    out = []
    for keyword, pattern in when.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ProfileError(f"{where}: unknown keyword {keyword!r} in `when`")
        try:
            out.append((int(tag), re.compile(str(pattern), re.IGNORECASE)))
        except re.error as exc:
            raise ProfileError(f"{where}: bad regular expression for {keyword}: {exc}") from None
    return tuple(out)


def _burn_rules(data: dict[str, Any], pname: str) -> tuple[BurnRule, ...]:
    ref = data.get("burned_in_rules")
    if not ref:
        return ()
    res = resources.files("sfr_gateway.profiles").joinpath(str(ref))
    if not res.is_file():
        raise ProfileError(f"profile {pname!r}: burned_in_rules file {ref!r} not found in profiles/")
    rules = tomllib.loads(res.read_text(encoding="utf-8")).get("rule", [])
    return tuple(
        BurnRule(reason=str(r.get("reason", "burned-in suspicion")), when=_when(r, f"{ref} rule {i + 1}"))
        for i, r in enumerate(rules)
    )


def _resolve_row(row: tables.TableRow, opts: tuple[str, ...], option_info: dict[str, Any]) -> Rule:
    enabled = [(o, row.code(option_info[o]["column"])) for o in opts if option_info[o]["column"]]
    hits = [(o, c) for o, c in enabled if c]
    if not hits:
        return Rule(row.code("basic_profile"), "basic", f"PS3.15 E.1-1 {row.name}: Basic {row.code('basic_profile')}", row.name)
    code = "C" if any(c == "C" for _, c in hits) else "K"
    names = ", ".join(o for o, c in hits if c == code)
    return Rule(code, names, f"PS3.15 E.1-1 {row.name}: {names} {code}", row.name)


def _graphics(patterns: dict[str, Rule]) -> dict[int, Rule]:
    """Curve and overlay groups are acted on whole (``patterns`` is updated to say so): an
    Overlay Data or Curve Data code that does not keep the data removes the whole group, since
    a group without its data breaks the Overlay Plane module and Clean Graphics has no way to
    check bit planes or curves for text."""
    out: dict[int, Rule] = {}
    for group, pattern, kind in ((0x5000, CURVE_PATTERN, "curve (50xx)"), (0x6000, OVERLAY_DATA_PATTERN, "overlay (60xx)")):
        rule = patterns[pattern]
        if rule.code != "K":
            words = (GRAPHICS_REMOVED if rule.code == "C" else GRAPHICS_BASIC).format(kind=kind)
            rule = Rule("X", rule.source, f"{rule.text}; {words}", rule.name)
        out[group] = patterns[pattern] = rule
    patterns[OVERLAY_COMMENTS_PATTERN] = Rule(out[0x6000].code, patterns[OVERLAY_COMMENTS_PATTERN].source, out[0x6000].text,
                                       patterns[OVERLAY_COMMENTS_PATTERN].name)
    return out


@lru_cache(maxsize=32)
def compile_plan(profile: Profile) -> Plan:
    """Compile ``profile`` with Table E.1-1 into a per-tag :class:`Plan` (cached)."""
    data, pname = profile.data, profile.name
    option_info = tables.options()
    for opt in profile.options:
        if opt not in option_info or opt == "basic":
            known = ", ".join(k for k in option_info if k != "basic")
            raise ProfileError(f"profile {pname!r}: unknown option {opt!r}; options are: {known}")
    if {"retain-long-full-dates", "retain-long-modified-dates"} <= set(profile.options):
        raise ProfileError(
            f"profile {pname!r}: retain-long-full-dates and retain-long-modified-dates exclude each other; keep one"
        )
    edition = data.get("ps315_edition", tables.PS315_EDITION)
    if edition != tables.PS315_EDITION:
        raise ProfileError(f"profile {pname!r} targets PS3.15 {edition}; this gateway packages {tables.PS315_EDITION}")
    rules: dict[int, Rule] = {}
    patterns: dict[str, Rule] = {}
    private_rule: Rule | None = None
    for row in tables.table_e1_1():
        rule = _resolve_row(row, profile.options, option_info)
        if row.tag is not None:
            rules[row.tag] = rule
        elif row.tag_text.startswith("(gggg"):
            private_rule = rule
        else:
            patterns[row.tag_text] = rule
    valid_codes = set(tables.action_codes())
    for source, overrides in (("profile", data.get("override", [])), ("site", [dict(o) for o in profile.site_overrides])):
        for i, entry in enumerate(overrides):
            where = f"profile {pname!r} {source} override {i + 1}"
            extra = set(entry) - _OVERRIDE_KEYS
            if extra:
                raise ProfileError(f"{where}: unknown key(s) {sorted(extra)}; use keyword|tag, action, reason")
            tag = _tag_of(entry, where)
            action = str(entry.get("action", "")).upper()
            if action not in valid_codes:
                raise ProfileError(f"{where}: unknown action {entry.get('action')!r}; use one of {sorted(valid_codes)}")
            name = rules[tag].name if tag in rules else (keyword_for_tag(tag) or f"{tag:08X}")
            reason = str(entry.get("reason", "")).strip() or "no reason given"
            rules[tag] = Rule(action, f"{source}-override", f"{source} override ({pname}): {action}: {reason}", name)
    site_keep = []
    for i, entry in enumerate([*data.get("private_keep", []), *(dict(e) for e in profile.site_private_keep)]):
        where = f"profile {pname!r} private_keep {i + 1}"
        try:
            key = (int(str(entry["group"]), 16), str(entry["creator"]).strip(), int(str(entry["element"]), 16))
        except (KeyError, ValueError):
            raise ProfileError(f"{where}: give group = \"0043\", creator = \"GEMS_PARM_01\", element = \"39\" (hex)") from None
        if key[0] % 2 == 0 or not 0 <= key[2] <= 0xFF:
            raise ProfileError(f"{where}: group must be odd and element a low byte 00-FF")
        disp = str(entry.get("disposition", "k")).lower()
        if disp not in _DISPOSITIONS:
            raise ProfileError(f"{where}: disposition must be one of {sorted(_DISPOSITIONS)}")
        site_keep.append((key, disp))
    private_cfg = data.get("private", {})
    policy = PrivatePolicy(
        retain_safe="retain-safe-private" in profile.options,
        use_tcia_keep=bool(private_cfg.get("use_tcia_kb", False)),
        site_keep=tuple(site_keep),
    )
    pseudonyms: dict[int, str] = {}
    for keyword, purpose in data.get("pseudonyms", {}).items():
        pseudonyms[_tag_of({"keyword": keyword}, f"profile {pname!r} [pseudonyms]")] = _purpose(purpose, keyword, pname)
    phi = data.get("phi_tokens", {})
    phi_words = tuple(_tag_of({"keyword": k}, f"profile {pname!r} [phi_tokens]") for k in phi.get("words", []))
    phi_phrases = tuple(_tag_of({"keyword": k}, f"profile {pname!r} [phi_tokens]") for k in phi.get("phrases", []))
    phi_places = tuple(_tag_of({"keyword": k}, f"profile {pname!r} [phi_tokens]") for k in phi.get("places", []))
    phi_numbers = tuple(_tag_of({"keyword": k}, f"profile {pname!r} [phi_tokens]") for k in phi.get("numbers", []))
    unknown_phi = set(phi) - {"words", "phrases", "places", "numbers", "stopwords"}
    if unknown_phi:
        raise ProfileError(f"profile {pname!r} [phi_tokens]: unknown key(s) {sorted(unknown_phi)}; "
                           "use words, phrases, places, numbers, stopwords")
    stopwords = frozenset(normalize(str(w)) for w in phi.get("stopwords", []))
    offset = data.get("dates", {}).get("offset_days", [-1095, -1])
    if not (isinstance(offset, list) and len(offset) == 2 and all(isinstance(x, int) for x in offset)
            and offset[0] <= offset[1] and 0 not in range(offset[0], offset[1] + 1)):
        raise ProfileError(f"profile {pname!r}: [dates] offset_days must be [min, max] integers not spanning 0")
    masks = []
    for i, m in enumerate(data.get("mask", [])):
        where = f"profile {pname!r} mask {i + 1}"
        regions = m.get("regions")
        if not regions or not all(isinstance(r, list) and len(r) == 4 and all(isinstance(v, int) and v >= 0 for v in r)
                                  for r in regions):
            raise ProfileError(f"{where}: regions must be a list of [x0, y0, x1, y1] pixel boxes")
        masks.append(Mask(name=str(m.get("name", f"mask {i + 1}")), when=_when(m, where),
                          regions=tuple(tuple(r) for r in regions)))
    if "retain-long-full-dates" in profile.options:
        dates_mode = "full"
    elif "retain-long-modified-dates" in profile.options:
        dates_mode = "modified"
    else:
        dates_mode = "remove"
    return Plan(
        name=pname,
        options=profile.options,
        rules=rules,
        patterns=patterns,
        private_rule=private_rule,
        private=policy,
        dates_mode=dates_mode,
        offset_range=(offset[0], offset[1]),
        max_age=int(data.get("patient", {}).get("max_age_years", 89)),
        sop_allow=_sop_uids(list(data.get("sop_classes", {}).get("allow", [])), f"profile {pname!r} [sop_classes]"),
        burned_in=_burn_rules(data, pname),
        masks=tuple(masks),
        pseudonyms=pseudonyms,
        phi_words=phi_words,
        phi_phrases=phi_phrases,
        phi_places=phi_places,
        phi_numbers=phi_numbers,
        phi_stopwords=stopwords,
        iod_types=tables.iod_types(),
        graphics=_graphics(patterns),
    )
