"""This patient's PHI tokens: the identifying values of the instance, at any depth.

Clean Descriptors removes them from every cleaned text. The profile's ``[phi_tokens]`` says
which attributes give them and how (``words``: names and IDs, every component; ``phrases``:
whole values; ``places``: addresses, institutions, departments, stations, every significant
word; ``numbers``: telephone numbers). Values inside sequences count too: a sequence is only
parsed (on a copy, so the engine's memo still sees the raw element) when its raw bytes hold the
tag of a token attribute, and the tokens are cached per distinct raw values (slices share them).
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import Any

from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.text import FrozenTokens, PhiTokens
from sfr_gateway.deid.values import dictionary_vr
from sfr_gateway.errors import DicomError

_CHARSET_HINTS = ("unknown encoding", "failed to decode")
_CACHE: dict[tuple[Any, ...], FrozenTokens] = {}
_KINDS = ("words", "phrases", "places", "numbers")


@lru_cache(maxsize=16)
def _sources(plan: Plan) -> tuple[dict[int, str], re.Pattern[bytes] | None]:
    """Token attribute -> kind, and a pattern finding any of their tags in raw bytes (either byte order)."""
    kinds: dict[int, str] = {}
    for kind, tags in (("words", plan.phi_words), ("phrases", plan.phi_phrases),
                       ("places", plan.phi_places), ("numbers", plan.phi_numbers)):
        for tag in tags:
            kinds.setdefault(tag, kind)
    needles = set()
    for tag in kinds:
        group, elem = tag >> 16, tag & 0xFFFF
        needles.add(group.to_bytes(2, "little") + elem.to_bytes(2, "little"))
        needles.add(group.to_bytes(2, "big") + elem.to_bytes(2, "big"))
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(needles))) if needles else None
    return kinds, pattern


def check_decoded(caught: list[warnings.WarningMessage]) -> None:
    """Refuse a file whose text did not decode with its declared Specific Character Set: PHI
    tokens then no longer match the free text they should clean (found by the fault campaign)."""
    for w in caught:
        if any(h in str(w.message).lower() for h in _CHARSET_HINTS):
            raise DicomError("charset", "text does not decode with the declared Specific Character Set")


def _is_sequence(elem: Any, tag: int) -> bool:
    vr = elem.VR
    return vr == "SQ" or (vr is None and dictionary_vr(tag) == "SQ")


def _nested(ds: Dataset, pattern: re.Pattern[bytes] | None) -> list[tuple[int, Any]]:
    """The sequences of ``ds`` that may hold a token attribute: (tag, raw bytes or the element)."""
    found: list[tuple[int, Any]] = []
    for key, elem in ds._dict.items():  # pydicom 3 internal: stored elements, unconverted
        tag = int(key)
        if tag >> 16 & 1 or not _is_sequence(elem, tag):
            continue
        value = elem.value
        if elem.__class__ is RawDataElement and value.__class__ is bytes:
            if pattern is not None and pattern.search(value):
                found.append((tag, value))
        elif value:
            found.append((tag, elem))
    return found


def _add(tokens: PhiTokens, kind: str, value: Any, stopwords: frozenset[str]) -> None:
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    for v in values:
        if v is None or isinstance(v, (bytes, Dataset)):
            continue
        text = str(v).replace("^", " ").replace("=", " ")
        if kind == "words":
            tokens.add_value(text, split_words=True)
        elif kind == "phrases":
            tokens.add_value(text, split_words=False)
        elif kind == "places":
            tokens.add_place(text, stopwords)
        else:
            tokens.add_number(text)


def _collect(ds: Dataset, kinds: dict[int, str], pattern: re.Pattern[bytes] | None, stopwords: frozenset[str],
             tokens: PhiTokens, depth: int = 0) -> None:
    store = ds._dict  # pydicom 3 internal
    for tag, kind in kinds.items():
        if tag in store:
            _add(tokens, kind, ds[tag].value, stopwords)
    if depth > 32:
        return
    for tag, found in _nested(ds, pattern):
        if isinstance(found, bytes):  # parse a copy: the dataset keeps its raw element
            raw: Any = store[tag]  # type: ignore[index]  # BaseTag keys; an int finds them
            elem = convert_raw_data_element(raw, encoding=ds._character_set, ds=ds)
        else:
            elem = found
        for item in elem.value or []:
            _collect(item, kinds, pattern, stopwords, tokens, depth + 1)


def collect(ds: Dataset, plan: Plan) -> FrozenTokens:
    """This patient's tokens, from the source before any change (cached per distinct raw values)."""
    kinds, pattern = _sources(plan)
    store = ds._dict  # pydicom 3 internal: stored elements, unconverted
    charset = store.get(0x00080005)  # type: ignore[call-overload]
    top = tuple(getattr(store.get(t), "value", None) for t in kinds)  # type: ignore[call-overload]
    nested = _nested(ds, pattern)
    key: tuple[Any, ...] = ()
    if all(isinstance(v, (bytes, type(None))) for v in top) and all(isinstance(v, bytes) for _, v in nested):
        key = (plan, str(getattr(charset, "value", "")), top, tuple(nested))
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
    tokens = PhiTokens()
    # Decoding happens here, once per distinct raw value (later slices hit the cache): a value
    # that does not decode must be refused now, deterministically, or a cache hit would skip the
    # check and its tokens (with replacement characters) would not match the free text.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _collect(ds, kinds, pattern, plan.phi_stopwords, tokens)
    check_decoded(caught)
    frozen = tokens.freeze()
    if key:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[key] = frozen
    return frozen
