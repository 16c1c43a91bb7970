"""UID checks that do not trust the engine: remapping consistency, references, identity flag.

Pairing outputs with their sources
----------------------------------
To learn the original -> new UID mapping we pair an output file with the source it came from,
using only what de-identification does not change, and only where the pairing is unambiguous:

1. the SOP Class, Instance Number and SHA-256 of the Pixel Data (clean images keep their pixels
   byte for byte), when that key is unique among the sources *and* among the outputs;
2. otherwise the SOP Class, Rows, Columns, Series Number, Instance Number, Acquisition Number,
   Image Position (Patient) and Number of Frames, under the same uniqueness rule.

Files left unpaired (a masked image, a duplicate) are still searched for tokens; they only do
not teach the mapping.

Checks (each a finding; see ``report.py``)
------------------------------------------
* ``uid-mapping`` (error): one original UID became several new ones across the output set, or
  one new UID stands for several originals; learnt from the UI elements found at the same
  attribute path (with the same keyword, and the same number of items in every enclosing
  sequence) in a paired source and output.
* ``media-storage-uid`` (error): file meta Media Storage SOP Instance UID differs from the SOP
  Instance UID.
* ``study-folder`` (error): files of one study folder disagree on Study Instance UID (the study
  folder is the parent of the series folder when files are 4 levels deep or more under OUT,
  else the folder holding the files; files at the top of OUT are not checked).
* ``identity-removed`` (error): Patient Identity Removed (0012,0062) is not ``YES``.
* ``dangling-reference``: a Referenced SOP Instance UID names no output file. Information
  (``info``, kind ``source-not-released``) when it stands for an instance of the sources (learnt
  from the pairs) that is not in the output: the selection excluded it (a localizer, a dose
  screen) or the engine quarantined it, as expected. A warning (``unresolved``) otherwise: the
  reference names an image we never saw.
An original UID that survives anywhere is a token leak, reported by the scan (``scan.py``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from .report import Finding
from .walk import pixel_digest


@dataclass
class FileFacts:
    """What the UID checks need to know about one file (source or output)."""

    path: Path
    rel: str
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    media_sop_uid: str = ""
    identity_removed: str | None = None
    uis: dict[str, tuple[str, str]] = field(default_factory=dict)
    """attribute path -> (keyword, value) of every UI element that is not well known."""
    seqs: dict[str, int] = field(default_factory=dict)
    """attribute path of every sequence -> its number of items."""
    refs: list[tuple[str, str]] = field(default_factory=list)
    """(attribute path, value) of every Referenced SOP Instance UID."""
    pixel_key: Hashable | None = None
    struct_key: Hashable | None = None


def _s(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _frozen(value: Any) -> Hashable:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str):
        return tuple(str(v) for v in value)
    return str(value)


def file_facts(ds: Dataset, path: Path, rel: str) -> FileFacts:
    """The top-level facts and pairing keys of a dataset (UI maps are filled by the walk)."""
    meta = getattr(ds, "file_meta", None)
    facts = FileFacts(
        path=path,
        rel=rel,
        study_uid=_s(ds, "StudyInstanceUID"),
        series_uid=_s(ds, "SeriesInstanceUID"),
        sop_uid=_s(ds, "SOPInstanceUID"),
        media_sop_uid=_s(meta, "MediaStorageSOPInstanceUID") if meta is not None else "",
        identity_removed=_s(ds, "PatientIdentityRemoved") if "PatientIdentityRemoved" in ds else None,
    )
    sop_class = _s(ds, "SOPClassUID")
    digest = pixel_digest(ds)
    if digest is not None:
        facts.pixel_key = (sop_class, _s(ds, "InstanceNumber"), digest)
    struct = tuple(_frozen(ds.get(k)) for k in ("Rows", "Columns", "SeriesNumber", "InstanceNumber",
                                                  "AcquisitionNumber", "ImagePositionPatient",
                                                  "NumberOfFrames"))
    if any(v not in (None, "") for v in struct):
        facts.struct_key = (sop_class, *struct)
    return facts


def pair_files(sources: list[FileFacts], outputs: list[FileFacts]) -> dict[str, FileFacts]:
    """Output rel path -> its source, where the pairing is unambiguous (see module doc)."""
    pairs: dict[str, FileFacts] = {}
    for attr in ("pixel_key", "struct_key"):
        left = [f for f in sources if getattr(f, attr) is not None]
        right = [f for f in outputs if f.rel not in pairs and getattr(f, attr) is not None]
        count_l = Counter(getattr(f, attr) for f in left)
        count_r = Counter(getattr(f, attr) for f in right)
        by_key = {getattr(f, attr): f for f in left if count_l[getattr(f, attr)] == 1}
        used = {id(p) for p in pairs.values()}
        for out in right:
            key = getattr(out, attr)
            src = by_key.get(key)
            if src is not None and count_r[key] == 1 and id(src) not in used:
                pairs[out.rel] = src
    return pairs


def check_uids(sources: list[FileFacts], outputs: list[FileFacts],
               pairs: dict[str, FileFacts]) -> list[Finding]:
    """All UID, reference and identity-flag findings for the output set."""
    findings: list[Finding] = []
    findings += _mapping_findings(outputs, pairs)
    output_sops = {o.sop_uid for o in outputs if o.sop_uid}
    source_sops = {s.sop_uid for s in sources if s.sop_uid}
    original_of = _originals(outputs, pairs)
    for out in outputs:
        if out.identity_removed != "YES":
            findings.append(Finding("error", "identity-removed", out.rel, "(0012,0062)",
                                    "PatientIdentityRemoved", "missing" if out.identity_removed is None
                                    else "not-yes"))
        if out.media_sop_uid and out.sop_uid and out.media_sop_uid != out.sop_uid:
            findings.append(Finding("error", "media-storage-uid", out.rel, "(0002,0003)",
                                    "MediaStorageSOPInstanceUID", "differs-from-sop-instance-uid"))
        for path, uid in out.refs:
            if uid in output_sops:
                continue
            if original_of.get(uid) in source_sops:  # a source instance left out: excluded or quarantined
                findings.append(Finding("info", "dangling-reference", out.rel, path, "ReferencedSOPInstanceUID",
                                        "source-not-released", token=uid,
                                        detail="an instance of the sources not in the output (excluded by the "
                                               "selection, or quarantined)"))
            else:
                findings.append(Finding("warning", "dangling-reference", out.rel, path,
                                        "ReferencedSOPInstanceUID", "unresolved", token=uid))
    findings += _study_folder_findings(outputs)
    return findings


def _originals(outputs: Iterable[FileFacts], pairs: dict[str, FileFacts]) -> dict[str, str]:
    """New UID -> the original it stands for, learnt from paired files (UI elements at the same
    path and keyword), where that is unambiguous."""
    seen: dict[str, set[str]] = defaultdict(set)
    for _out, _path, _keyword, old, new in _replaced_uids(outputs, pairs):
        seen[new].add(old)
    return {new: next(iter(olds)) for new, olds in seen.items() if len(olds) == 1}


def _replaced_uids(outputs: Iterable[FileFacts],
                   pairs: dict[str, FileFacts]) -> Iterator[tuple[FileFacts, str, str, str, str]]:
    """(output, path, keyword, original UID, new UID) for each UI element of a paired output that
    replaced the one at the same path and keyword of its source. Other elements are not comparable
    here; an unchanged original is a token leak, which the scan reports."""
    for out in outputs:
        src = pairs.get(out.rel)
        if src is None:
            continue
        for path, (keyword, new) in out.uis.items():
            before = src.uis.get(path)
            if before is not None and before[0] == keyword and before[1] != new and _same_shape(src, out, path):
                yield out, path, keyword, before[1], new


def _mapping_findings(outputs: Iterable[FileFacts], pairs: dict[str, FileFacts]) -> list[Finding]:
    forward: dict[str, set[str]] = defaultdict(set)
    backward: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], tuple[str, str, str]] = {}
    for out, path, keyword, old, new in _replaced_uids(outputs, pairs):
        forward[old].add(new)
        backward[new].add(old)
        where.setdefault(("f", old), (out.rel, path, keyword))
        where.setdefault(("b", new), (out.rel, path, keyword))
    findings: list[Finding] = []
    for old, news in sorted(forward.items(), key=lambda kv: where[("f", kv[0])]):
        if len(news) > 1:
            rel, path, keyword = where[("f", old)]
            findings.append(Finding("error", "uid-mapping", rel, path, keyword, "one-original-many-new",
                                    count=len(news)))
    for new, olds in sorted(backward.items(), key=lambda kv: where[("b", kv[0])]):
        if len(olds) > 1:
            rel, path, keyword = where[("b", new)]
            findings.append(Finding("error", "uid-mapping", rel, path, keyword, "many-originals-one-new",
                                    count=len(olds), token=new))
    return findings


def _same_shape(src: FileFacts, out: FileFacts, path: str) -> bool:
    """True when every sequence enclosing ``path`` has as many items in the output as in the
    source (an engine that dropped an item shifts the indexes: no pairing through it)."""
    cut = path.find("[")
    while cut > 0:
        if src.seqs.get(path[:cut]) != out.seqs.get(path[:cut]):
            return False
        cut = path.find("[", cut + 1)
    return True


def _study_folder_findings(outputs: list[FileFacts]) -> list[Finding]:
    groups: dict[Path, list[FileFacts]] = defaultdict(list)
    for out in outputs:
        parts = Path(out.rel).parts
        if len(parts) < 2:
            continue  # a file at the top of OUT: its folder says nothing about its study
        # OUT/patient/study/series/file (4 deep or more): the study folder is the series' parent;
        # shallower layouts: the folder holding the file belongs to one study in any sane layout.
        groups[Path(out.rel).parents[1 if len(parts) >= 4 else 0]].append(out)
    findings = []
    for folder, members in sorted(groups.items()):
        studies = Counter(m.study_uid for m in members if m.study_uid)
        if len(studies) > 1:
            majority = studies.most_common(1)[0][0]
            odd = next(m for m in members if m.study_uid and m.study_uid != majority)
            findings.append(Finding("error", "study-folder", odd.rel, "(0020,000D)", "StudyInstanceUID",
                                    "inconsistent-in-folder", count=len(studies), detail=str(folder)))
    return findings
