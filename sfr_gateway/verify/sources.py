"""Read the source files: their PHI tokens (into a :class:`TokenIndex`) and their UID facts."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from . import tokens as tk
from .uids import FileFacts, file_facts
from .walk import ElementView, iter_elements

log = logging.getLogger(__name__)

DEFER_SIZE = "256 KB"


def iter_files(roots: Sequence[Path], *, exclude: Path | None = None) -> Iterator[Path]:
    """Regular files under ``roots`` (recursively, sorted, symlinked folders not followed)."""
    excluded = exclude.resolve() if exclude is not None else None
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            if excluded is not None and (here.resolve() == excluded or excluded in here.resolve().parents):
                dirs[:] = []
                continue
            dirs.sort()
            for name in sorted(names):
                path = here / name
                if path.is_file():
                    yield path


def read_dataset(path: Path) -> Dataset | None:
    """The dataset of a DICOM file (or a raw dataset without preamble), else None."""
    try:
        return pydicom.dcmread(path, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        pass
    except Exception as exc:  # noqa: BLE001 - truncated, unreadable...: counted by the caller
        log.debug("cannot read %s: %s", path, type(exc).__name__)
        return None
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_SIZE, force=True)
    except Exception:  # noqa: BLE001 - not parseable even forced: not DICOM
        return None
    return ds if ("SOPClassUID" in ds or "PatientID" in ds) else None


def collect_view(index: tk.TokenIndex, view: ElementView, study: str | None) -> None:
    """Add the tokens one source element gives (see ``tokens`` for the rules)."""
    if view.binary or not view.texts:
        return
    rules = tk.rules()
    keyword, vr, text = view.keyword, view.vr, view.texts[0]
    if vr == "PN":
        names = rules["person_name_kinds"]
        tk.add_person_name(index, text, names.get(keyword, names["_any_other_PN"]))
    elif vr == "UI":
        kinds = rules["uid_kinds"]
        for uid in text.split("\\"):
            uid = uid.strip(" \x00")
            if uid and not tk.is_well_known_uid(uid, keyword):
                index.add_uid(uid, kinds.get(keyword, kinds["_any_other_UI"]))
    elif keyword in rules["identifier_kinds"]:
        tk.add_identifier(index, text, rules["identifier_kinds"][keyword])
    elif keyword in rules["phone_kinds"]:
        tk.add_phone(index, text, rules["phone_kinds"][keyword])
    elif keyword in rules["address_kinds"]:
        tk.add_address(index, text, rules["address_kinds"][keyword], parts=True)
    elif keyword in rules["institution_kinds"]:
        kind = rules["institution_kinds"][keyword]
        if keyword in rules["institution_name_parts"]:
            tk.add_institution_name(index, text, kind)
        elif keyword == "InstitutionAddress":
            tk.add_address(index, text, kind, parts=False)
        else:
            ws = tk.words(text)
            if len("".join(ws)) >= 4 and any(w not in rules["stopwords"] for w in ws):
                index.add_phrase(ws, kind)
    elif keyword in rules["public_vocabulary_keywords"]:
        index.add_public(text)
    elif keyword in rules["birth_date_keywords"]:
        tk.add_date(index, text, "birth-date", None)
    elif keyword in rules["date_keywords"] or keyword in rules["datetime_keywords"]:
        tk.add_date(index, text, "original-date", study)


def read_source(path: Path, rel: str, index: tk.TokenIndex) -> FileFacts | None:
    """Tokens of one source file into ``index``; its UID facts, or None when it is not DICOM."""
    ds = read_dataset(path)
    if ds is None:
        return None
    try:
        facts = file_facts(ds, path, rel)
        study = facts.study_uid or None
        for view in iter_elements(ds):
            collect_view(index, view, study)
            if view.items >= 0:
                facts.seqs[view.path] = view.items
            elif view.vr == "UI" and not view.binary:
                value = view.texts[0].strip(" \x00")
                if value and not tk.is_well_known_uid(value, view.keyword):
                    facts.uis[view.path] = (view.keyword, value)
    except Exception as exc:  # noqa: BLE001 - a value pydicom cannot parse; tokens so far are kept
        log.debug("cannot walk source %s: %s", rel, type(exc).__name__)
        return None
    return facts
