"""Clean free text: remove this patient's known PHI tokens and date-like patterns.

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
_DATE_LIKE = re.compile(
    r"\b(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)?\d{2}|(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}|"
    r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\b"
)
_SPACES = re.compile(r"[ \t]{2,}")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form of a word (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass
class PhiTokens:
    """The PHI tokens of one patient, collected from the source before any change."""

    words: set[str] = field(default_factory=set)
    phrases: set[tuple[str, ...]] = field(default_factory=set)

    def add_value(self, value: str, *, split_words: bool) -> None:
        """Add a value: each word when ``split_words`` (names, IDs), else as one phrase."""
        parts = tuple(normalize(w) for w in _WORD.findall(value))
        if not parts:
            return
        if split_words:
            for part in parts:
                if len(part) >= 2:
                    self.words.add(part)
        elif len(parts) == 1:
            if len(parts[0]) >= 2:
                self.words.add(parts[0])
        else:
            self.phrases.add(parts)

    def __bool__(self) -> bool:
        return bool(self.words or self.phrases)

    def freeze(self) -> FrozenTokens:
        """An immutable, hashable copy (so cleaning results can be cached)."""
        return FrozenTokens(frozenset(self.words), frozenset(self.phrases))


@dataclass(frozen=True)
class FrozenTokens:
    """Immutable PHI tokens of one patient."""

    words: frozenset[str]
    phrases: frozenset[tuple[str, ...]]


def clean_text(value: str, tokens: PhiTokens | FrozenTokens) -> str:
    """Remove PHI tokens and date-like patterns from ``value``; untouched text is kept as is."""
    if not value:
        return value
    spans: list[tuple[int, int]] = [m.span() for m in _DATE_LIKE.finditer(value)]
    words = [(m.start(), m.end(), normalize(m.group())) for m in _WORD.finditer(value)]
    for start, end, norm in words:
        if norm in tokens.words:
            spans.append((start, end))
    if tokens.phrases:
        norms = [w[2] for w in words]
        for phrase in tokens.phrases:
            n = len(phrase)
            for i in range(len(norms) - n + 1):
                if tuple(norms[i : i + n]) == phrase:
                    spans.append((words[i][0], words[i + n - 1][1]))
    if not spans:
        return value
    keep = [True] * len(value)
    for start, end in spans:
        for k in range(start, end):
            keep[k] = False
    out = "".join(c for c, k in zip(value, keep, strict=True) if k)
    out = _SPACES.sub(" ", out)
    out = re.sub(r"(?:\^|\s)+$", "", out).strip()
    return out


@lru_cache(maxsize=8192)
def clean_multi(value: str, tokens: FrozenTokens) -> str:
    """Clean each value of a backslash-separated multi-valued string (cached per input)."""
    return "\\".join(clean_text(part, tokens) for part in value.split("\\"))
