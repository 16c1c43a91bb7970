"""The PHI tokens of the sources, normalised, in an index built for fast whole-word search.

Matching model
--------------
Text is *normalised* (Unicode NFKD, accents dropped, ligatures spelled out, upper case) and cut
into *words*: maximal runs of letters and digits (``_``, ``^``, spaces, hyphens, dots, slashes...
all separate words). A token is a sequence of one or more words; it is found when the same words
appear consecutively in an output value, whatever separators stand between them. So source name
``Lefèvre^Hélène`` is found in ``CT thorax HELENE LEFEVRE``, ``lefevre-helene`` or ``LEFÈVRE_H``,
but not inside ``LEFEVRES`` or glued words (``HELENELEFEVRE``): the price of no false alarms on
ordinary words. Lookup is a hash of each word (and of each n-gram starting with a word that
begins a multi-word token), so a search costs O(words), whatever the number of tokens.

What is a token (and what is skipped as too short or too common)
----------------------------------------------------------------
* Person names (any PN element; the kind comes from the keyword: ``patient-name``,
  ``physician-name``, ``operator-name``, else ``person-name``): every ``^``/``=`` component as a
  phrase when it has several words (``DE LA TOUR``, ``JEAN PIERRE``), and every word of
  ``min_word_length`` (3) characters or more as ``...-part``, except stopwords (particles,
  civilities) and pure digits.
* Identifiers (Patient ID, Other Patient IDs, issuer, accession number, study ID, procedure
  IDs...): the whole value, and its words glued together when it has several. Skipped when it has
  fewer than 3 letters/digits, or is pure digits shorter than ``min_digits`` (4).
* Phone numbers: the whole value, its digits alone, and the French national rendering of a
  ``+33`` number.
* Addresses: every component (split on ``^``, ``,``, new lines) as a phrase, and every word of
  ``min_part_length`` (4) or more that is not a stopword (street names, city, postal code).
  Institution address: components only. Institution name: the whole value, and its words of 4
  or more that are not stopwords. Department: the whole value only. An institution token that
  is also a manufacturer or model value of the sources (``TOSHIBA`` written as institution) is
  dropped: device vocabulary is no PHI.
* Birth date (global) and original dates (study, series, acquisition, content..., and the date
  part of the listed DT attributes): ``YYYYMMDD``, ``YYYY-MM-DD`` (any separator), ``DD/MM/YYYY``
  (any separator) and ``DDMMYYYY``; a digit word longer than 8 that starts with a date token is
  also a hit (a DT value). Original dates are *scoped to their source study*: they count as a
  leak only in outputs of the same study (a shifted date of one study may fall on the original
  date of another); when an output's study is unknown they count everywhere.
* UIDs: every UI value of the sources of ``min_uid_length`` (10) characters or more that is not
  well known (see ``verify-tokens.json``): found as a whole UID or as the prefix of a longer one
  (``<original>.1``), in UI elements and inside any text or binary value. Output UI elements that
  are well known by keyword or value (SOP classes, transfer syntax, Implementation Class UID...)
  are not searched for UIDs.
* Pure-digit tokens are not matched inside numeric strings (IS, DS): ``1000`` there is a number;
  in raw bytes, a pure-digit token inside a run of 16 digits or more (``99978`` inside a random
  39-digit UID of a manifest) is no hit either; glued to letters, binary bytes or a few digits, it is.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from pydicom.uid import UID_dictionary

_WORD = re.compile(r"[^\W_]+")
_UID_RUN = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_LIGATURES = str.maketrans({"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "Ø": "O", "ø": "o",
                            "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i"})
_SPLIT_COMPONENTS = re.compile(r"[\^=\\]")
_SPLIT_ADDRESS = re.compile(r"[\^,;\\\r\n]")


@lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    """The packaged token rules (``sfr_gateway/data/verify-tokens.json``)."""
    text = resources.files("sfr_gateway").joinpath("data/verify-tokens.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    data["stopwords"] = frozenset(data["stopwords"])
    return data


def normalise(text: str) -> str:
    """Upper case, accents removed, ligatures spelled out: ``Lefèvre Œuvre`` -> ``LEFEVRE OEUVRE``."""
    if text.isascii():
        return text.upper()
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (runs of letters and digits)."""
    return _WORD.findall(normalise(text))


@dataclass
class Entry:
    """What the index knows about one token."""

    kinds: set[str] = field(default_factory=set)
    scopes: set[str] | None = field(default_factory=set)
    """Source StudyInstanceUIDs the token belongs to; None: it counts everywhere."""

    def applies_to(self, study: str | None) -> bool:
        return self.scopes is None or study is None or study in self.scopes

    @property
    def kind(self) -> str:
        """The most telling kind (names before dates before UIDs), for the report."""
        return min(self.kinds, key=lambda k: (_KIND_ORDER.get(k.split("-")[0], 9), k))


_KIND_ORDER = {"patient": 0, "birth": 1, "other": 1, "phone": 1, "accession": 2, "physician": 3,
               "operator": 3, "person": 3, "institution": 4, "study": 5, "procedure": 5, "original": 6}


@dataclass(frozen=True)
class Hit:
    """A token found in a value: the normalised token (only shown with --reveal) and its entry."""

    token: str
    entry: Entry


class TokenIndex:
    """All source tokens; ``find_in_text`` / ``find_uid`` answer in O(words)."""

    def __init__(self) -> None:
        self.phrases: dict[str, Entry] = {}
        self.uids: dict[str, Entry] = {}
        self._starts: dict[str, set[int]] = {}
        self._max_uid_len = 0
        self._binary_re: re.Pattern[str] | None = None
        self.public: set[str] = set()
        """Normalised manufacturer/model values and their words (see ``drop_public``)."""

    def __len__(self) -> int:
        return len(self.phrases) + len(self.uids)

    # -- building -------------------------------------------------------------------------------
    def add_phrase(self, ws: Iterable[str], kind: str, scope: str | None = None) -> None:
        """Add a token made of normalised words; ``scope`` None means it counts everywhere."""
        ws = list(ws)
        if not ws:
            return
        key = " ".join(ws)
        entry = self.phrases.setdefault(key, Entry())
        _merge(entry, kind, scope)
        if len(ws) > 1:
            self._starts.setdefault(ws[0], set()).add(len(ws))
        self._binary_re = None

    def add_uid(self, uid: str, kind: str) -> None:
        """Add an original UID (global); shorter than ``min_uid_length`` it is no token."""
        if len(uid) < rules()["min_uid_length"]:
            return
        entry = self.uids.setdefault(uid, Entry())
        _merge(entry, kind, None)
        self._max_uid_len = max(self._max_uid_len, len(uid))

    def merge(self, other: TokenIndex) -> None:
        """Add every token of ``other`` (a worker's partial index)."""
        for key, entry in other.phrases.items():
            for kind in entry.kinds:
                if entry.scopes is None:
                    self.add_phrase(key.split(" "), kind)
                else:
                    for scope in entry.scopes:
                        self.add_phrase(key.split(" "), kind, scope)
        for uid, entry in other.uids.items():
            for kind in entry.kinds:
                self.add_uid(uid, kind)
        self.public |= other.public

    def add_public(self, value: str) -> None:
        """A device vocabulary value of the sources (manufacturer, model)."""
        ws = words(value)
        if ws:
            self.public.add(" ".join(ws))
            self.public.update(ws)

    def drop_public(self) -> None:
        """Drop institution tokens that are device vocabulary (``TOSHIBA`` as institution name)."""
        for key in [k for k, e in self.phrases.items() if k in self.public
                    and all(kind.startswith("institution-") for kind in e.kinds)]:
            del self.phrases[key]
        self._binary_re = None

    def counts(self) -> dict[str, int]:
        """Number of tokens by kind (for the report)."""
        out: dict[str, int] = {}
        for entry in [*self.phrases.values(), *self.uids.values()]:
            for kind in entry.kinds:
                out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    # -- searching ------------------------------------------------------------------------------
    def find_in_words(self, ws: list[str], *, numeric: bool = False) -> Iterator[Hit]:
        """Tokens found in a list of normalised words."""
        phrases, starts = self.phrases, self._starts
        for i, w in enumerate(ws):
            entry = phrases.get(w)
            if entry is not None and not (numeric and w.isdigit()):
                yield Hit(w, entry)
            lengths = starts.get(w)
            if lengths:
                for n in lengths:
                    if i + n <= len(ws):
                        key = " ".join(ws[i:i + n])
                        entry = phrases.get(key)
                        if entry is not None:
                            yield Hit(key, entry)
            if len(w) > 8 and w.isdigit() and not numeric:
                entry = phrases.get(w[:8])
                if entry is not None and _is_date_entry(entry):
                    yield Hit(w[:8], entry)

    def find_in_text(self, text: str, *, numeric: bool = False) -> Iterator[Hit]:
        """Tokens found in ``text``: words and phrases, and original UIDs written inside it."""
        yield from self.find_in_words(words(text), numeric=numeric)
        if self.uids and "." in text:
            for run in _UID_RUN.findall(text):
                hit = self.find_uid(run)
                if hit is not None:
                    yield hit

    def find_in_binary(self, text: str) -> Iterator[Hit]:
        """Tokens in a reading of raw bytes: as in text, plus single-word tokens of
        ``BINARY_SUBSTRING_MIN`` characters or more found *anywhere*, even glued to
        neighbouring bytes (a length prefix or a stray byte is no word boundary)."""
        yield from self.find_in_text(text)
        if self._binary_re is None:
            self._binary_re = _trie_regex(
                k for k in self.phrases if " " not in k and len(k) >= BINARY_SUBSTRING_MIN)
        norm = normalise(text)
        for match in self._binary_re.finditer(norm):
            token = match.group()
            if token.isdigit() and _inside_number(norm, match.start(), match.end()):
                continue  # a postal code inside a long digit run (a random 39-digit UID) is no leak
            yield Hit(token, self.phrases[token])

    def find_uid(self, value: str) -> Hit | None:
        """An original UID equal to ``value`` or a component prefix of it."""
        value = value.strip(" \x00")
        entry = self.uids.get(value)
        if entry is not None:
            return Hit(value, entry)
        cut = value.rfind(".", 0, self._max_uid_len + 1)
        while cut > 0:
            entry = self.uids.get(value[:cut])
            if entry is not None:
                return Hit(value[:cut], entry)
            cut = value.rfind(".", 0, cut)
        return None


BINARY_SUBSTRING_MIN = 5


LONG_NUMBER = 16  # digits: a UID component or a hash, not an identifier someone typed


def _inside_number(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` lies inside a run of at least ``LONG_NUMBER`` digits."""
    while start > 0 and text[start - 1].isdigit():
        start -= 1
    while end < len(text) and text[end].isdigit():
        end += 1
    return end - start >= LONG_NUMBER
_TRIE_MAX_DEPTH = 200


def _trie_regex(keys: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of ``keys`` (longest first), shaped as a trie so that matching
    costs about the same for ten tokens or ten thousand."""
    keys = list(keys)
    # A key longer than the trie can nest (a fuzzed value of thousands of bytes) would blow the
    # recursion of ``build``: such keys are plain alternatives, tried first (longest first).
    long = sorted((k for k in keys if len(k) > _TRIE_MAX_DEPTH), key=len, reverse=True)
    trie: dict[str, Any] = {}
    for key in (k for k in keys if len(k) <= _TRIE_MAX_DEPTH):
        node = trie
        for ch in key:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    pattern = "|".join([*(re.escape(k) for k in long), *([build(trie)] if trie else [])])
    return re.compile(pattern if pattern else r"(?!x)x")


def _merge(entry: Entry, kind: str, scope: str | None) -> None:
    entry.kinds.add(kind)
    if scope is None:
        entry.scopes = None
    elif entry.scopes is not None:
        entry.scopes.add(scope)


def _is_date_entry(entry: Entry) -> bool:
    return any(k in ("birth-date", "original-date") for k in entry.kinds)


# -- collecting tokens from source values ---------------------------------------------------------

def is_well_known_uid(uid: str, keyword: str) -> bool:
    """True for UIDs that are not PHI: classes, transfer syntaxes, the standard's own root..."""
    if keyword.endswith("ClassUID") or keyword in rules()["uid_not_phi_keywords"]:
        return True
    return uid.startswith("1.2.840.10008.") or uid in UID_dictionary


def _keep_word(w: str, min_len: int) -> bool:
    return len(w) >= min_len and not w.isdigit() and w not in rules()["stopwords"]


def _id_ok(ws: list[str]) -> bool:
    joined = "".join(ws)
    if len(joined) < 3:
        return False
    return not (joined.isdigit() and len(joined) < rules()["min_digits"])


def add_person_name(index: TokenIndex, value: str, kind: str) -> None:
    """A PN value: multi-word components as phrases, words as ``<kind>-part``."""
    min_len = rules()["min_word_length"]
    for component in _SPLIT_COMPONENTS.split(value):
        ws = words(component)
        kept = [w for w in ws if _keep_word(w, min_len)]
        if len(ws) > 1 and kept:
            index.add_phrase(ws, kind)
        for w in kept:
            index.add_phrase([w], f"{kind}-part")


def add_identifier(index: TokenIndex, value: str, kind: str) -> None:
    """An ID: the whole value, and its words glued together."""
    for one in value.split("\\"):
        ws = words(one)
        if _id_ok(ws):
            index.add_phrase(ws, kind)
            if len(ws) > 1:
                index.add_phrase(["".join(ws)], kind)


def add_phone(index: TokenIndex, value: str, kind: str) -> None:
    """A phone number: as written, digits only, and the national form of a +33 number."""
    for one in value.split("\\"):
        add_identifier(index, one, kind)
        digits = "".join(c for c in one if c.isdigit())
        if len(digits) >= 6:
            index.add_phrase([digits], kind)
            if digits.startswith("33") and len(digits) == 11:
                index.add_phrase(["0" + digits[2:]], kind)


def add_address(index: TokenIndex, value: str, kind: str, *, parts: bool) -> None:
    """An address: components as phrases, and (``parts``) distinctive words."""
    min_len = rules()["min_part_length"]
    for component in _SPLIT_ADDRESS.split(value):
        ws = words(component)
        if not ws or not any(w not in rules()["stopwords"] for w in ws):
            continue
        short_number = len(ws) == 1 and ws[0].isdigit() and len(ws[0]) < rules()["min_digits"]
        if (len(ws) > 1 or len(ws[0]) >= min_len) and not short_number:
            index.add_phrase(ws, kind)
        if parts:
            for w in ws:
                long_enough = len(w) >= min_len and (not w.isdigit() or len(w) >= rules()["min_digits"])
                if long_enough and w not in rules()["stopwords"]:
                    index.add_phrase([w], f"{kind}-part")


def add_institution_name(index: TokenIndex, value: str, kind: str) -> None:
    """An institution name: the whole value and its distinctive words."""
    ws = words(value)
    if ws and _id_ok(ws):
        index.add_phrase(ws, kind)
    for w in ws:
        if _keep_word(w, rules()["min_part_length"]):
            index.add_phrase([w], f"{kind}-part")


def date_renderings(value: str) -> list[list[str]]:
    """``YYYYMMDD`` as word sequences: YYYYMMDD, YYYY MM DD, DD MM YYYY, DDMMYYYY."""
    m = _DATE.match(value.strip()[:8])
    if not m or not value.strip()[:8].isdigit():
        return []
    y, mo, d = m.groups()
    if not ("01" <= mo <= "12" and "01" <= d <= "31"):
        return []
    return [[y + mo + d], [y, mo, d], [d, mo, y], [d + mo + y]]


def add_date(index: TokenIndex, value: str, kind: str, scope: str | None) -> None:
    """A DA value (or the date part of a DT) in its renderings."""
    for one in value.split("\\"):
        for ws in date_renderings(one):
            index.add_phrase(ws, kind, scope)
