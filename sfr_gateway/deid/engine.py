"""Apply a compiled :class:`Plan` to a pydicom Dataset, recursively, emitting change records.

The walk reads raw (unconverted) elements and converts only what it changes, so kept
elements and Pixel Data are written back byte for byte. Hook order per element: private
policy (odd groups) -> Table E.1-1 rule (with patterns) -> combined-code resolution by IOD
Type -> action handler (X Z D U K C) -> date shift / age clamp / text clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

from sfr_gateway.deid import dates
from sfr_gateway.deid.plan import Plan, Rule
from sfr_gateway.deid.private import PrivateDecision
from sfr_gateway.deid.pseudonym import Pseudonymizer
from sfr_gateway.deid.rules import BINARY_RULE, EMPTY_RULE, TEXT_CLEAN, UN_READ
from sfr_gateway.deid.text import FrozenTokens, clean_multi
from sfr_gateway.deid.values import (
    BINARY,
    DUMMY,
    LONG_VRS,
    MAX_LEN,
    NUMERIC,
    TEXT_VRS,
    dictionary_vr,
    encoded_value,
    get_text,
    is_empty,
    keyword_of,
    put_empty,
    put_text,
    vr_of,
)


@dataclass(frozen=True)
class Change:
    """One decision of the engine about one attribute (the audit reuses these records).

    ``before``/``after`` hold real values in memory only; whoever renders them must mask them.
    """

    path: str
    tag: int
    keyword: str
    vr: str
    private_creator: str | None
    action: str
    code: str
    rule: str
    before: Any = field(default=None, repr=False, compare=False)
    after: Any = field(default=None, repr=False, compare=False)


@dataclass
class Context:
    """Per-file state of the walk."""

    plan: Plan
    pz: Pseudonymizer
    sop_class: str
    patient_key: str
    patient_pseudonym: str
    date_offset: int
    tokens: FrozenTokens | None
    record_kept: bool = False
    keep_values: bool = False
    record_changes: bool = True
    changes: list[Change] = field(default_factory=list)
    dates_moved: bool = False


def remap_uid(ctx: Context, value: str) -> str:
    """Keyed remap of one UID; well-known UIDs (SOP classes, transfer syntaxes...) are kept."""
    value = value.strip().rstrip("\x00")
    if not value or value in UID_dictionary:
        return value
    return ctx.pz.uid(value)


@lru_cache(maxsize=16384)
def _shifted(value: str, vr: str, days: int) -> str:
    return dates.shift_multi(value, vr, days)


_KEEP, _DELETE, _UNSET = object(), object(), object()


class _Memo(dict[tuple[Any, ...], tuple[Any, bool]]):
    """Outcomes by (tag, VR, raw value), and which tags are not worth remembering: a tag whose
    value missed on most files (an instance's own UID, number or position) is processed
    directly from then on, so the memo holds the values slices share and stays small."""

    __slots__ = ("files", "misses", "skip")

    def __init__(self) -> None:
        super().__init__()
        self.files = 0
        self.misses: dict[int, int] = {}
        self.skip: set[int] = set()

    def missed(self, tag: int) -> bool:
        """Count a miss of ``tag``; True if its outcome is still worth remembering."""
        n = self.misses[tag] = self.misses.get(tag, 0) + 1
        if n >= _MEMO_PROBATION and n * 4 > self.files * 3:
            self.skip.add(tag)
            for key in [k for k in self if k[0] == tag]:
                del self[key]
            return False
        return True


_MEMOS: dict[tuple[Any, ...], _Memo] = {}
_MEMO_MAX = 50_000  # entries in all memos together
_MEMO_PROBATION = 16  # files before a tag that keeps missing stops being remembered


def _memo_for(ctx: Context) -> _Memo | None:
    """The outcomes already computed for this plan, key, SOP class and patient (slices of a
    series repeat most of their values), when nothing is being recorded; None otherwise.

    An element's outcome is a pure function of its tag, VR and raw value given these (keyed
    pseudonyms, the patient's date offset and PHI tokens): the memo is only ever a shortcut."""
    if ctx.record_changes or ctx.record_kept or ctx.keep_values:
        return None
    key = (ctx.plan, ctx.pz, ctx.sop_class, ctx.patient_key, ctx.patient_pseudonym, ctx.date_offset, ctx.tokens)
    memo = _MEMOS.get(key)
    if memo is None:
        if len(_MEMOS) >= 64 or sum(map(len, _MEMOS.values())) > _MEMO_MAX:
            _MEMOS.clear()
        memo = _MEMOS[key] = _Memo()
    elif len(memo) > _MEMO_MAX:
        memo.clear()
    memo.files += 1
    return memo


FREE_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
_IN_CLEANED = Rule("C", "engine", "free text inside a sequence under C or D (not in PS3.15 E.1-1)", "free text")


class Walker:
    """Applies one plan to one dataset tree for one file (see module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.plan = ctx.plan
        self.values = ctx.keep_values
        self.memo = _memo_for(ctx)
        self.parents: tuple[int, ...] = ()  # tags of the sequences above the dataset being walked
        self.cleaning = False  # inside a sequence whose code is C or D (see _recurse)

    def record(self, path: str, tag: int, vr: str, action: str, code: str, rule: str,
               before: Any = None, after: Any = None, creator: str | None = None) -> None:
        """Append a change record (values only when the context keeps them)."""
        if not self.ctx.record_changes:
            return
        if not self.values:
            before = after = None
        self.ctx.changes.append(Change(path, tag, keyword_of(tag), vr, creator, action, code, rule, before, after))

    def _value(self, ds: Dataset, tag: int) -> Any:
        return ds[tag].value if self.values and tag in ds else None

    def walk(self, ds: Dataset, prefix: str = "") -> None:
        """Apply the plan to ``ds`` and every nested sequence item."""
        private_groups: list[int] = []
        store = ds._dict  # pydicom 3 internal: BaseTag keys, raw (unconverted) elements
        memo = self.memo
        charset: Any = _UNSET
        for tag in list(store):
            group = tag >> 16
            if group & 1:
                if group not in private_groups:
                    private_groups.append(group)
                continue
            if memo is not None and group != 0x0002 and tag & 0xFFFF and tag not in memo.skip:
                elem = store[tag]
                value = elem.value
                if (elem.__class__ is RawDataElement and value.__class__ is bytes and elem.length != 0xFFFFFFFF
                        and elem.VR != "SQ" and value.isascii() and b"\x1b" not in value):
                    self._memoised(ds, tag, prefix, elem, (int(tag), elem.VR, value, self.parents), memo, sequence=False)
                    continue
                if (not prefix and elem.__class__ is RawDataElement and value.__class__ is bytes and elem.is_little_endian
                        and vr_of(ds, tag) == "SQ"):
                    if charset is _UNSET:
                        charset = str(getattr(store.get(0x00080005), "value", ""))  # type: ignore[call-overload]
                    key = (int(tag), "SQ", value, elem.length, elem.is_implicit_VR, charset)
                    self._memoised(ds, tag, prefix, elem, key, memo, sequence=True)
                    continue
            if tag & 0xFFFF == 0 or group == 0x0002:
                del ds[tag]
                self.record(prefix + keyword_of(tag), tag, "UL" if tag & 0xFFFF == 0 else "UN", "removed", "X",
                            "group length / file meta element inside the dataset (removed)")
                continue
            self._public(ds, tag, prefix)
        if private_groups:
            self._private(ds, private_groups, prefix)

    def _public(self, ds: Dataset, tag: int, prefix: str) -> None:
        """Apply the plan's rule (or the unlisted-attribute policy) to one public element."""
        path = prefix + keyword_of(tag)
        if (tag >> 16) & 0xFF00 in (0x5000, 0x6000):  # a curve or overlay group: cleaned whole
            self._graphics(ds, tag, path)
            return
        rule = self.plan.rule_for(int(tag))
        vr = vr_of(ds, tag)
        if vr == "UN":
            vr = self._read_un(ds, tag)
            if rule is not None and vr != "UN":
                rule = Rule(rule.code, rule.source, f"{rule.text}; {UN_READ} {vr}", rule.name)
        if rule is None:
            self._unlisted(ds, tag, vr, path)
            return
        code, rule = self.plan.resolve(rule, (*self.parents, int(tag)), self.ctx.sop_class)
        self._apply(ds, tag, vr, path, code, rule)

    def _read_un(self, ds: Dataset, tag: int) -> str:
        """The VR to act with for an element stored as UN: its dictionary VR where the dictionary
        has exactly one (a date is then shifted, a UID remapped, a text cleaned, and the output
        carries the real VR); UN otherwise (its value is then of unknown kind)."""
        want = dictionary_vr(int(tag))
        raw = ds._dict[tag]  # type: ignore[index]  # pydicom 3 internal: stored element
        if not want or raw.__class__ is not RawDataElement:
            return "UN"
        if want == "SQ":  # pydicom reads a UN sequence as implicit VR little endian (PS3.5 6.2.2)
            try:
                return "SQ" if ds[tag].VR == "SQ" else "UN"
            except (ValueError, TypeError, KeyError, NotImplementedError, IndexError):
                ds._dict[tag] = raw  # type: ignore[index]
                return "UN"
        if raw.length > 0xFFFF and want not in LONG_VRS:
            return "UN"
        ds._dict[tag] = raw._replace(VR=want)  # type: ignore[index]
        return want

    def _graphics(self, ds: Dataset, tag: int, path: str) -> None:
        """A curve (50xx) or overlay (60xx) group: removed whole unless the plan keeps it (see
        :meth:`Plan.graphics_rule`); a group is never left without its data."""
        rule = self.plan.graphics_rule(tag >> 16)
        vr = vr_of(ds, tag)
        if rule.code == "K":
            if self.ctx.record_kept:
                self.record(path, tag, vr, "kept", "K", rule.text, self._value(ds, tag), self._value(ds, tag))
            return
        before = self._value(ds, tag) if vr != "SQ" else None
        del ds[tag]
        self.record(path, tag, vr, "removed", "X", rule.text, before, None)

    def _memoised(self, ds: Dataset, tag: int, prefix: str, elem: RawDataElement, key: tuple[Any, ...],
                  memo: _Memo, *, sequence: bool) -> None:
        """Apply the remembered outcome of ``key`` (see :func:`_memo_for`), or process the element
        and remember it: its new raw bytes, or for a top-level sequence the bytes the writer would
        produce (the next slice's identical sequence is then neither parsed, walked nor re-encoded)."""
        ctx = self.ctx
        hit = memo.get(key)
        if hit is not None:
            out, moved = hit
            if out is _DELETE:
                del ds._dict[tag]  # type: ignore[arg-type]
            elif out is not _KEEP:
                ds._dict[tag] = elem._replace(value=out[0], length=out[1], VR=out[2])  # type: ignore[index]
            if moved:
                ctx.dates_moved = True
            return
        moved_before, ctx.dates_moved = ctx.dates_moved, False
        self._public(ds, tag, prefix)
        moved = ctx.dates_moved
        ctx.dates_moved = moved_before or moved
        new = ds._dict.get(tag)  # type: ignore[call-overload]  # BaseTag keys; an int finds them
        if new is None:
            outcome: Any = _DELETE
        elif new is elem:
            outcome = _KEEP
        elif sequence:
            encoded = encoded_value(new, elem.is_implicit_VR, ds.get("SpecificCharacterSet", "iso8859"))
            outcome = (*encoded, elem.VR) if encoded is not None else None
        elif new.__class__ is RawDataElement and new.value.__class__ is bytes:
            outcome = (new.value, len(new.value), new.VR)
        else:
            outcome = None  # converted to a value: not a byte-level outcome
        if outcome is not None and memo.missed(key[0]):
            memo[key] = (outcome, moved)

    # -- public attributes ---------------------------------------------------------------
    def _unlisted(self, ds: Dataset, tag: int, vr: str, path: str) -> None:
        if vr == "SQ":
            self._recurse(ds, tag, path)
        elif self.cleaning and vr in FREE_TEXT and self.ctx.tokens is not None:
            self._clean(ds, tag, vr, path, _IN_CLEANED)
        elif vr in ("DA", "DT") and self.plan.dates_mode == "modified":
            self._shift(ds, tag, vr, path, "C", "retain-long-modified-dates: every DA/DT shifted by the patient offset")
        elif self.ctx.record_kept:
            self.record(path, tag, vr, "kept", "K", "not in PS3.15 E.1-1 (kept)", self._value(ds, tag), self._value(ds, tag))

    def _apply(self, ds: Dataset, tag: int, vr: str, path: str, code: str, rule: Rule) -> None:
        if code == "X":
            before = self._value(ds, tag) if vr != "SQ" else None
            del ds[tag]
            self.record(path, tag, vr, "removed", code, rule.text, before, None)
        elif vr == "SQ":
            if code == "Z":
                ds[tag].value = []
                self.record(path, tag, vr, "emptied", code, rule.text)
            else:  # K, C, U, D on a sequence: keep it, apply the profile to its items
                self._recurse(ds, tag, path, rule.text, cleaning=code in ("C", "D"))
        elif code == "Z":
            before = self._value(ds, tag)
            put_empty(ds, tag, vr)
            self.record(path, tag, vr, "emptied", code, rule.text, before, "")
        elif code == "D":
            self._dummy(ds, tag, vr, path, rule)
        elif code == "U":
            self._uid(ds, tag, vr, path, rule.text)
        elif code == "C":
            self._clean(ds, tag, vr, path, rule)
        else:  # K
            self._keep(ds, tag, vr, path, rule)

    def _recurse(self, ds: Dataset, tag: int, path: str, rule: str = "not in PS3.15 E.1-1 (kept)",
                 creator: str | None = None, *, cleaning: bool = False) -> None:
        """Walk the items of a kept sequence. Inside a sequence whose code is C or D (Content
        Sequence, Acquisition Context...), free text the table does not list (a Text Value) is
        cleaned like a descriptor, not kept: the sequence is being cleaned, not merely kept."""
        items = ds[tag].value or []
        if self.ctx.record_kept:  # the sequence itself (its value: the number of items)
            self.record(path, tag, "SQ", "kept", "K", rule, len(items), len(items), creator)
        parents, was_cleaning = self.parents, self.cleaning
        self.parents = (*parents, int(tag))
        self.cleaning = was_cleaning or cleaning
        try:
            for i, item in enumerate(items):
                self.walk(item, f"{path}[{i}].")
        finally:
            self.parents, self.cleaning = parents, was_cleaning

    def _keep(self, ds: Dataset, tag: int, vr: str, path: str, rule: Rule) -> None:
        if vr in BINARY:
            self._binary(ds, tag, vr, path, "K", rule)
        elif vr in ("DA", "DT") and self.plan.dates_mode == "modified":
            self._shift(ds, tag, vr, path, "K", rule.text + " (date shifted: modified dates)")
        elif vr == "AS":
            self._age(ds, tag, path, rule)
        elif self.ctx.record_kept:
            self.record(path, tag, vr, "kept", "K", rule.text, self._value(ds, tag), self._value(ds, tag))

    def _age(self, ds: Dataset, tag: int, path: str, rule: Rule) -> None:
        before = get_text(ds, tag)
        after = dates.clamp_age(before, self.plan.max_age)
        if after != before.strip():
            put_text(ds, tag, "AS", after)
            self.record(path, tag, "AS", "cleaned", "C", rule.text + f" (ages above {self.plan.max_age} clamped)", before, after)
        elif self.ctx.record_kept:
            self.record(path, tag, "AS", "kept", "K", rule.text, before, before)

    def _shift(self, ds: Dataset, tag: int, vr: str, path: str, code: str, text: str) -> None:
        before = get_text(ds, tag)
        if vr == "TM" or not before.strip():
            if self.ctx.record_kept:
                self.record(path, tag, vr, "kept", code, text, before, before)
            return
        try:
            after = _shifted(before, vr, self.ctx.date_offset)
        except ValueError:
            del ds[tag]
            self.record(path, tag, vr, "removed", "X", text + " (unparsable date removed)", before, None)
            return
        put_text(ds, tag, vr, after)
        self.ctx.dates_moved = True
        self.record(path, tag, vr, "shifted", code, text, before, after)

    def _binary(self, ds: Dataset, tag: int, vr: str, path: str, code: str, rule: Rule) -> None:
        """K or C on a value that cannot be cleaned as text (OB, OW, OF..., UN of unknown kind):
        removed, or a zero dummy where the file's IOD makes the attribute Type 1."""
        before = self._value(ds, tag)
        kind, iod = self.plan.attribute_type((*self.parents, int(tag)), self.ctx.sop_class)
        if kind == 1:
            ds[tag].value = b"\x00\x00"
            self.record(path, tag, vr, "dummy", "D", f"{rule.text}; {BINARY_RULE}: Type 1 in {iod}, zero dummy",
                        before, b"\x00\x00")
            return
        del ds[tag]
        self.record(path, tag, vr, "removed", "X", f"{rule.text}; {BINARY_RULE}: removed ({code} keeps no binary value)",
                    before, None)

    def _dummy(self, ds: Dataset, tag: int, vr: str, path: str, rule: Rule) -> None:
        if vr == "UI":
            self._uid(ds, tag, vr, path, rule.text)
            return
        purpose = self.plan.pseudonyms.get(tag)
        before = self._value(ds, tag)
        if purpose == "patient":
            put_text(ds, tag, vr, self.ctx.patient_pseudonym)
            self.record(path, tag, vr, "pseudonymised", "D", rule.text, before, self.ctx.patient_pseudonym)
            return
        if is_empty(ds, tag):  # nothing to replace: a dummy would be a value shared by every file
            if self.ctx.record_kept:
                self.record(path, tag, vr, "kept", "D", f"{rule.text}; {EMPTY_RULE}", before, before)
            return
        if purpose and vr in TEXT_VRS:
            original = get_text(ds, tag).strip()
            if original:
                max_len = MAX_LEN.get(vr, 64)
                after = "\\".join(self.ctx.pz.identifier(purpose, v.strip(), max_len) for v in original.split("\\"))
                put_text(ds, tag, vr, after)
                self.record(path, tag, vr, "pseudonymised", "D", rule.text, before, after)
                return
        if vr in NUMERIC or vr in BINARY:
            elem = ds[tag]
            elem.value = 0 if vr in NUMERIC else b"\x00\x00"
            self.record(path, tag, vr, "dummy", "D", rule.text, before, elem.value)
            return
        after_text = DUMMY.get(vr, "ANONYMIZED")
        put_text(ds, tag, vr, after_text)
        self.record(path, tag, vr, "dummy", "D", rule.text, before, after_text)

    def _uid(self, ds: Dataset, tag: int, vr: str, path: str, text: str, creator: str | None = None) -> None:
        before = get_text(ds, tag)
        if vr in BINARY:
            new = self.ctx.pz.uid(before.strip(" \x00"))
            data = new.encode("ascii")
            ds[tag].value = data + b"\x00" * (len(data) % 2)
            after = new
        elif vr == "UI":
            after = "\\".join(remap_uid(self.ctx, v) for v in before.split("\\"))
            put_text(ds, tag, vr, after)
        else:
            after = self.ctx.pz.uid(before.strip())
            put_text(ds, tag, vr, after[:MAX_LEN.get(vr, 64)])
        self.record(path, tag, vr, "uid", "U", text, before, after, creator)

    def _clean(self, ds: Dataset, tag: int, vr: str, path: str, rule: Rule) -> None:
        if vr in ("DA", "DT", "TM"):
            if self.plan.dates_mode == "modified":
                self._shift(ds, tag, vr, path, "C", rule.text)
            elif self.plan.dates_mode == "full":
                self._keep(ds, tag, vr, path, rule)
            else:
                del ds[tag]
                self.record(path, tag, vr, "removed", "X", rule.text + " (no date option: removed)")
            return
        if vr == "AS":
            self._age(ds, tag, path, rule)
            return
        if vr == "UI":
            self._uid(ds, tag, vr, path, rule.text)
            return
        if vr in BINARY:
            self._binary(ds, tag, vr, path, "C", rule)
            return
        if vr in TEXT_VRS and self.ctx.tokens is not None:
            before = get_text(ds, tag)
            after = clean_multi(before, self.ctx.tokens)
            if after != before:
                put_text(ds, tag, vr, after)
                self.record(path, tag, vr, "cleaned", "C", f"{rule.text}; {TEXT_CLEAN}", before, after)
                return
        if self.ctx.record_kept:
            self.record(path, tag, vr, "kept", "C", rule.text + " (nothing to clean)", self._value(ds, tag), self._value(ds, tag))

    # -- private attributes --------------------------------------------------------------
    def _private(self, ds: Dataset, groups: list[int], prefix: str) -> None:
        rule_text = self.plan.private_rule.text if self.plan.private_rule else "PS3.15 E.1-1 Private Attributes"
        all_tags = list(ds._dict)
        for group in groups:
            tags = [t for t in all_tags if t >> 16 == group]
            creators: dict[int, str] = {}
            for t in tags:
                elem_no = t & 0xFFFF
                if 0x10 <= elem_no <= 0xFF:
                    creators[elem_no] = get_text(ds, t).strip()
            used: set[int] = set()
            for t in tags:
                elem_no = t & 0xFFFF
                if 0x10 <= elem_no <= 0xFF:
                    continue
                vr = vr_of(ds, t)
                block = elem_no >> 8
                creator = creators.get(block) if block >= 0x10 else None
                path = f"{prefix}({group:04X},{elem_no:04X})"
                if group < 0x0009 or group == 0xFFFF or elem_no < 0x1000:
                    decision = PrivateDecision("d", "invalid private group or element (removed)")
                else:
                    decision = self.plan.private.decide(group, creator, elem_no & 0xFF)
                if decision.disposition == "d":
                    before = ds.get_item(t).value if self.values else None
                    del ds[t]
                    self.record(path, t, vr, "removed", "X", decision.rule if creator else rule_text + ": " + decision.rule,
                                before, None, creator)
                    continue
                if self._private_keep(ds, t, vr, path, decision, creator):
                    used.add(block)
            for elem_no, name in creators.items():
                ctag, cpath = (group << 16) | elem_no, f"{prefix}({group:04X},{elem_no:04X})"
                if elem_no not in used:
                    del ds[ctag]
                    self.record(cpath, ctag, "LO", "removed", "X", "Private Creator of a block with nothing kept",
                                name, None, name)
                elif self.ctx.record_kept:
                    self.record(cpath, ctag, "LO", "kept", "K", "Private Creator of a kept block", name, name, name)

    def _private_keep(self, ds: Dataset, tag: int, vr: str, path: str, decision: PrivateDecision, creator: str | None) -> bool:
        disp = decision.disposition
        if vr == "SQ":
            self._recurse(ds, tag, path, decision.rule, creator)
            return True
        try:
            if disp == "h":
                self._uid(ds, tag, vr, path, decision.rule, creator)
                return True
            if disp == "o":
                before = get_text(ds, tag).strip(" \x00")
                if before:
                    after = dates.shift_loose(before, self.ctx.date_offset)
                    if vr in BINARY:
                        data = after.encode("ascii")
                        ds[tag].value = data + b" " * (len(data) % 2)
                    else:
                        put_text(ds, tag, vr, after)
                    self.ctx.dates_moved = True
                    self.record(path, tag, vr, "shifted", "C", decision.rule, before, after, creator)
                return True
            if disp == "oi":
                elem: DataElement = ds[tag]
                before_v = elem.value
                if isinstance(before_v, bytes) and len(before_v) >= 4:
                    seconds = int.from_bytes(before_v[:4], "little", signed=True)
                    elem.value = dates.shift_epoch(seconds, self.ctx.date_offset).to_bytes(4, "little", signed=True)
                elif before_v not in (None, "", b""):
                    elem.value = dates.shift_epoch(int(before_v), self.ctx.date_offset)
                self.ctx.dates_moved = True
                self.record(path, tag, vr, "shifted", "C", decision.rule, before_v, elem.value, creator)
                return True
        except (ValueError, UnicodeDecodeError, TypeError, OverflowError):
            del ds[tag]
            self.record(path, tag, vr, "removed", "X", decision.rule + " (value not usable: removed)", None, None, creator)
            return False
        if vr in ("DA", "DT") and self.plan.dates_mode == "modified":
            self._shift(ds, tag, vr, path, "C", decision.rule + " (date shifted)")
        elif self.ctx.record_kept:
            self.record(path, tag, vr, "kept", "K", decision.rule, self._value(ds, tag), self._value(ds, tag), creator)
        return True
