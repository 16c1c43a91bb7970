"""Clean free text: remove this patient's known PHI tokens, dates and telephone numbers.

Values arrive decoded (pydicom applies the Specific Character Set, including one set inside a
sequence item); matching ignores case and accents, so ``Hélène``, ``HELENE`` and ``hélène``
are the same token. Words not matching are kept byte for byte, so a clinical descriptor like
``CT THORAX SANS INJECTION`` is unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

_WORD = re.compile(r"\w+", re.UNICODE)
_PART = re.compile(r"[^\W_]+", re.UNICODE)  # words of a place: "CT_CHU_PESSAC" has three
_MONTHS = (
    "janvier|janv|f[ée]vrier|f[ée]vr?|mars|avril|avr|mai|juin|juillet|juil|ao[uû]t|septembre|sept|octobre|oct|"
    "novembre|nov|d[ée]cembre|d[ée]c|january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug|"
    "september|sep|october|november|december|dec"
)
_DATE_LIKE = re.compile(
    r"\b(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)?\d{2}|(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}|"
    r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\b"
    # written with the month's name: 12 mars 2020, 1er avril 2021, March 12, 2020, mars 2020
    rf"|\b(?:\d{{1,2}}(?:er|st|nd|rd|th)?\s+)?(?:{_MONTHS})\.?\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?(?:19|20)\d{{2}}\b",
    re.IGNORECASE,
)
# French numbers (01 23 45 67 89, +33 1 23 45 67 89, 01.23.45.67.89) and any +CC international one
_PHONE = re.compile(r"(?<![\w+])(?:(?:\+|00)33\s?(?:\(0\)\s?)?|0)[1-9](?:[\s.\-]?\d{2}){4}(?!\w)"
                    r"|(?<![\w+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){3,6}(?!\w)")
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\(?\d[\d\s.\-/()]{4,}\d(?!\w)")
_JOINERS = re.compile(r"[\s\-'’^.,/_]*")
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.)])")
_EMPTY_BRACKETS = re.compile(r"\s*(?:\(\s*\)|\[\s*\])")
_DANGLING = re.compile(r"(?:^[\s,;:.\-/]+)|(?:[\s,;:\-/(^]+$)")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form of a word (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@dataclass
class PhiTokens:
    """The PHI tokens of one patient, collected from the source before any change.

    ``words``: single words (every component of a name, every part of an ID, an ID with its
    separators dropped); ``phrases``: multi-word values matched whole; ``numbers``: telephone
    numbers as digit strings (matched whatever the spacing or the +33/0 prefix)."""

    words: set[str] = field(default_factory=set)
    phrases: set[tuple[str, ...]] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)

    def add_value(self, value: str, *, split_words: bool) -> None:
        """Add a value: each word when ``split_words`` (names, IDs), else as one phrase."""
        parts = tuple(normalize(w) for w in _WORD.findall(value))
        if not parts:
            return
        if split_words:
            for part in parts:
                if len(part) >= 2:
                    self.words.add(part)
            joined = "".join(parts)
            if len(parts) > 1 and len(joined) >= 4 and any(c.isdigit() for c in joined):
                self.words.add(joined)  # an ID written without its separators: AB-1234 -> ab1234
        elif len(parts) == 1:
            if len(parts[0]) >= 2:
                self.words.add(parts[0])
        else:
            self.phrases.add(parts)

    def add_place(self, value: str, stopwords: frozenset[str]) -> None:
        """Add an address, institution, department or station: the whole value as a phrase, and
        each significant word alone (not a stopword, 3 letters or more, or 4 digits or more:
        street and city names, postal codes; not a house number)."""
        self.add_value(value, split_words=False)
        for word in _PART.findall(value):
            norm = normalize(word)
            if norm in stopwords:
                continue
            if (norm.isdigit() and len(norm) >= 4) or (not norm.isdigit() and len(norm) >= 3):
                self.words.add(norm)

    def add_number(self, value: str) -> None:
        """Add a telephone number (its last 9 digits: the number without 0 or +33)."""
        digits = _digits(value)
        if len(digits) >= 6:
            self.numbers.add(digits[-9:])

    def __bool__(self) -> bool:
        return bool(self.words or self.phrases or self.numbers)

    def freeze(self) -> FrozenTokens:
        """An immutable, hashable copy (so cleaning results can be cached)."""
        return FrozenTokens(frozenset(self.words), frozenset(self.phrases), frozenset(self.numbers))


@dataclass(frozen=True)
class FrozenTokens:
    """Immutable PHI tokens of one patient."""

    words: frozenset[str]
    phrases: frozenset[tuple[str, ...]]
    numbers: frozenset[str] = frozenset()


def _spans(value: str, tokens: PhiTokens | FrozenTokens) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = [m.span() for m in _DATE_LIKE.finditer(value)]
    spans.extend(m.span() for m in _PHONE.finditer(value))
    if tokens.numbers:
        for m in _DIGIT_RUN.finditer(value):
            digits = _digits(m.group())
            if any(n in digits for n in tokens.numbers):
                spans.append(m.span())
    words = [(m.start(), m.end(), normalize(m.group())) for m in _WORD.finditer(value)]
    for start, end, norm in words:
        if norm in tokens.words:
            spans.append((start, end))
        elif "_" in norm:  # \w joins words with underscores: PESSAC_CT1
            for m in _PART.finditer(value, start, end):
                if normalize(m.group()) in tokens.words:
                    spans.append(m.span())
    if tokens.phrases:
        norms = [w[2] for w in words]
        for phrase in tokens.phrases:
            n = len(phrase)
            for i in range(len(norms) - n + 1):
                if tuple(norms[i : i + n]) == phrase:
                    spans.append((words[i][0], words[i + n - 1][1]))
    return spans


def clean_text(value: str, tokens: PhiTokens | FrozenTokens) -> str:
    """Remove PHI tokens, dates and telephone numbers from ``value``; untouched text is kept as is.

    Separators left between two removed parts go with them (``DUPONT-LEFÈVRE`` leaves no ``-``)."""
    if not value:
        return value
    spans = _spans(value, tokens)
    if not spans:
        return value
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and (start <= merged[-1][1] or _JOINERS.fullmatch(value, merged[-1][1], start)):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, last = [], 0
    for start, end in merged:
        out.append(value[last:start])
        last = end
    out.append(value[last:])
    text = _SPACES.sub(" ", _EMPTY_BRACKETS.sub("", "".join(out)))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = re.sub(r"(?:\^|\s)+$", "", text).strip()
    return _DANGLING.sub("", text)


@lru_cache(maxsize=8192)
def clean_multi(value: str, tokens: FrozenTokens) -> str:
    """Clean each value of a backslash-separated multi-valued string (cached per input)."""
    return "\\".join(clean_text(part, tokens) for part in value.split("\\"))
