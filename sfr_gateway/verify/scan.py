"""Search every value of every output file for source tokens.

Every element at every depth is searched: file meta, sequences (items inherit or override the
Specific Character Set), private elements, text of every string VR, and the raw bytes of binary
values (OB, OW, OD, OF, OL, OV, UN) read as Latin-1, UTF-8 and UTF-16LE. Pixel data is *not*
searched unless ``include_pixel_data`` (burned-in text is an image matter, and random pixel
bytes make false alarms); it is hashed to pair the output with its source. A file in OUT that is
not DICOM is searched as raw bytes and reported as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import tokens as tk
from .report import Finding
from .sources import read_dataset
from .uids import FileFacts, file_facts
from .walk import ElementView, binary_texts, iter_elements

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
    if view.vr == "UI" and not view.binary:
        for value in view.texts[0].split("\\"):
            hit = index.find_uid(value)
            if hit is not None:
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
    facts = file_facts(ds, path, rel)
    result = OutputScan(facts)
    for view in iter_elements(ds, include_pixel_data=include_pixel_data):
        for hit in scan_view(index, view):
            result.hits.append(Pending(_hit_finding(rel, view, hit), hit.entry))
        if view.vr == "UI" and not view.binary:
            value = view.texts[0].strip(" \x00")
            if not value:
                continue
            if view.keyword == "ReferencedSOPInstanceUID":
                facts.refs.append((view.path, value))
            if not tk.is_well_known_uid(value, view.keyword):
                facts.uis[view.path] = (view.keyword, value)
    return result


def _scan_raw(path: Path, rel: str, index: tk.TokenIndex) -> OutputScan:
    result = OutputScan(None)
    result.other.append(Finding("warning", "unreadable-output", rel, "<raw>", "", "not-dicom"))
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
        result.other[0] = Finding("error", "unreadable-output", rel, "<raw>", "", "cannot-read")
    return result
