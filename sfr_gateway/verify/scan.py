"""Search every value of every output file for source tokens.

Every element at every depth is searched: file meta, sequences (items inherit or override the
Specific Character Set), private elements, text of every string VR, and the raw bytes of binary
values (OB, OW, OD, OF, OL, OV, UN) read as Latin-1, UTF-8 and UTF-16LE. Pixel data is *not*
searched unless ``include_pixel_data`` (burned-in text is an image matter, and random pixel
bytes make false alarms); it is hashed to pair the output with its source. A file in OUT that is
not DICOM is searched as raw bytes and reported as a warning; a DICOM file that cannot be parsed
is searched as raw bytes and reported as an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from ..batch.names import FORMAT, MANIFEST_NAME
from . import tokens as tk
from .report import Finding
from .sources import read_dataset
from .uids import FileFacts, file_facts
from .walk import ElementView, binary_texts, iter_elements

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024
_OVERLAP = 512


@dataclass
class Pending:
    """A token hit whose fate may depend on which study the output belongs to."""

    finding: Finding
    entry: tk.Entry


@dataclass
class OutputScan:
    """What scanning one output file gave."""

    facts: FileFacts | None
    hits: list[Pending] = field(default_factory=list)
    other: list[Finding] = field(default_factory=list)
    manifest: bool = False  # a batch's manifest.json: searched like any file, but not DICOM on purpose


def _where(view: ElementView) -> str:
    if view.in_file_meta:
        return "file-meta"
    return "binary" if view.binary else "text"


def _hit_finding(rel: str, view: ElementView | None, hit: tk.Hit) -> Finding:
    entry = hit.entry
    return Finding(
        "error", "phi-token", rel,
        view.path if view else "<raw>",
        view.keyword if view else "",
        entry.kind,
        kinds=tuple(sorted(entry.kinds)),
        vr=view.vr if view else "",
        where=_where(view) if view else "raw",
        token=hit.token,
    )


def scan_view(index: tk.TokenIndex, view: ElementView) -> list[tk.Hit]:
    """Token hits in one element (deduplicated across its decodings)."""
    seen: dict[str, tk.Hit] = {}
    if not view.texts:
        return []
    if view.vr == "UI" and not view.binary:
        for value in view.texts[0].split("\\"):
            if tk.is_well_known_uid(value.strip(" \x00"), view.keyword):
                continue  # a class, transfer syntax, implementation...: not an instance's identity
            hit = index.find_uid(value)
            if hit is not None:
                seen.setdefault(hit.token, hit)
        for hit in index.find_in_words(tk.words(view.texts[0]), numeric=True):  # text where a UID belongs
            seen.setdefault(hit.token, hit)
        return list(seen.values())
    numeric = view.vr in ("IS", "DS")
    for text in view.texts:
        found = index.find_in_binary(text) if view.binary else index.find_in_text(text, numeric=numeric)
        for hit in found:
            seen.setdefault(hit.token, hit)
    return list(seen.values())


def scan_output(path: Path, rel: str, index: tk.TokenIndex, *, include_pixel_data: bool = False) -> OutputScan:
    """Search one output file; collect its UID facts for the consistency checks."""
    ds = read_dataset(path)
    if ds is None:
        return _scan_raw(path, rel, index)
    try:
        return _scan_dataset(ds, path, rel, index, include_pixel_data)
    except Exception as exc:  # noqa: BLE001 - any parser failure: fall back to the raw bytes
        log.debug("cannot walk %s: %s", rel, type(exc).__name__)
        return _scan_raw(path, rel, index, dicom=True)


def _scan_dataset(ds: Dataset, path: Path, rel: str, index: tk.TokenIndex, include_pixel_data: bool) -> OutputScan:
    facts = file_facts(ds, path, rel)
    result = OutputScan(facts)
    for view in iter_elements(ds, include_pixel_data=include_pixel_data):
        if view.truncated:
            result.other.append(Finding("error", "unreadable-output", rel, view.path, view.keyword,
                                        "truncated-value"))
        for hit in scan_view(index, view):
            result.hits.append(Pending(_hit_finding(rel, view, hit), hit.entry))
        if view.items >= 0:
            facts.seqs[view.path] = view.items
        elif view.vr == "UI" and not view.binary:
            value = view.texts[0].strip(" \x00")
            if not value:
                continue
            if view.keyword == "ReferencedSOPInstanceUID":
                facts.refs.append((view.path, value))
            if not tk.is_well_known_uid(value, view.keyword):
                facts.uis[view.path] = (view.keyword, value)
    return result


def is_batch_manifest(path: Path) -> bool:
    """True for the ``manifest.json`` of an opened batch (its own format tag), not any JSON file."""
    import json


    if path.name != MANIFEST_NAME:
        return False
    try:
        data = json.loads(path.read_bytes()[: 64 * 1024 * 1024])
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _scan_raw(path: Path, rel: str, index: tk.TokenIndex, *, dicom: bool = False) -> OutputScan:
    """Search the raw bytes. A file with the DICOM preamble that pydicom cannot parse is an
    error (a broken output); any other file is a warning (it should not be in OUT)."""
    result = OutputScan(None)
    try:
        with path.open("rb") as fh:
            dicom = dicom or fh.read(132)[128:] == b"DICM"
    except OSError:
        pass
    if not dicom and is_batch_manifest(path):
        result.manifest = True  # a member of every batch: no finding for being there (its text is searched)
        return _scan_manifest(path, rel, result, index)
    else:
        result.other.append(Finding("error", "unreadable-output", rel, "<raw>", "", "unparsable-dicom") if dicom
                            else Finding("warning", "unreadable-output", rel, "<raw>", "", "not-dicom"))
    seen: set[str] = set()
    try:
        with path.open("rb") as fh:
            tail = b""
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                data = tail + chunk
                tail = data[-_OVERLAP:]
                for text in binary_texts(data):
                    for hit in index.find_in_binary(text):
                        if hit.token not in seen:
                            seen.add(hit.token)
                            result.hits.append(Pending(_hit_finding(rel, None, hit), hit.entry))
    except OSError:
        result.manifest = False
        result.other = [Finding("error", "unreadable-output", rel, "<raw>", "", "cannot-read")]
    return result


def _json_strings(value: object) -> list[str]:
    """Every key and string value of a parsed JSON document, at every depth (numbers aside)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in (k, *_json_strings(v))]
    if isinstance(value, list):
        return [text for v in value for text in _json_strings(v)]
    return []


def _scan_manifest(path: Path, rel: str, result: OutputScan, index: tk.TokenIndex) -> OutputScan:
    """A batch manifest is text, searched as text: every key and string value word by word, as a
    DICOM text element is. Not the raw-bytes search: that one finds a token glued inside any run
    of characters, and a manifest is mostly SHA-256 digests in hex, in which a 5-digit Study ID
    turns up by chance (a false finding in about one verify in twenty on the sample export).
    Its numbers are sizes and counts (the batch format has no identifier in a number)."""
    import json

    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        result.manifest = False
        result.other = [Finding("error", "unreadable-output", rel, "<raw>", "", "cannot-read")]
        return result
    seen: set[str] = set()
    for text in _json_strings(document):
        for hit in index.find_in_text(text):
            if hit.token not in seen:
                seen.add(hit.token)
                result.hits.append(Pending(_hit_finding(rel, None, hit), hit.entry))
    return result
