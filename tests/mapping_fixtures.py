"""Helpers for the mapping and keys tests (owned by the mapping area).

``pipeline_record`` plays the pipeline's part with the real engine: it de-identifies every
eligible instance of the index, records each study through the mapping's one write path
(``mapping.sync.record_released``, what ``run`` and ``deidentify`` use) and checks that what it
recorded is what the engine produced (pseudonym, new study UID, keyed accession, date offset
seen in the shifted Study Date).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path

import pydicom
from crypto_fixtures import require_binary, run  # noqa: F401  (re-exported for the mapping/keys tests)

from sfr_gateway.crypto import age
from sfr_gateway.deid import compile_plan, deidentify_file, load_profile
from sfr_gateway.deid.pseudonym import PseudonymKeys
from sfr_gateway.errors import DicomError
from sfr_gateway.home.config import HomePaths, load_config
from sfr_gateway.keys.files import load_pseudonym_secret
from sfr_gateway.ledger import open_ledger
from sfr_gateway.mapping.derive import Derivation
from sfr_gateway.mapping.store import MappingStore
from sfr_gateway.mapping.sync import Released, record_released
from sfr_gateway.scan.walk import scan


def age_identity(folder: Path, name: str = "dpo") -> tuple[Path, str]:
    """A fresh age identity file (age-keygen format, 0600) and its recipient."""
    ident = age.Identity.generate()
    path = folder / f"{name}.key"
    path.write_text(age.identity_file_text(ident))
    path.chmod(0o600)
    return path, str(ident.recipient)


@functools.lru_cache(maxsize=4)
def _plan(name: str):  # type: ignore[no-untyped-def]
    return compile_plan(load_profile(name))


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


def pipeline_record(home: Path, export: Path, *, release: bool = True) -> dict[str, tuple]:
    """Scan ``export``, de-identify every eligible instance with the engine, record each study.

    Returns {original study UID: (pseudonym, new study UID, new accession, date offset)}.
    """
    paths = HomePaths(home)
    cfg = load_config(home)
    secret = load_pseudonym_secret(paths)
    plan = _plan(cfg.profile)
    keys = PseudonymKeys(secret=secret, site_id=cfg.site_id)
    seen: dict[str, tuple] = {}
    released: list[Released] = []
    with open_ledger(paths.state_db) as ledger:
        scan(ledger, [export], cfg.selection, workers=1)
        store = MappingStore.open(ledger, paths)
        rows = ledger.conn.execute(
            "SELECT path, study_uid FROM instances WHERE state = 'indexed' AND eligible = 1 ORDER BY path").fetchall()
        done: set[str] = set()
        for (raw, study) in rows:
            if study in done:  # the engine's study-level values are the same in every file of a study
                continue
            src = os.fsdecode(bytes(raw))
            original = pydicom.dcmread(src, stop_before_pixels=True)
            try:
                result = deidentify_file(src, plan, keys, write=False)
            except DicomError:  # quarantined files are not in the mapping
                continue
            done.add(study)
            out = result.dataset
            offset = (_date(out.StudyDate) - _date(original.StudyDate)).days
            facts = (result.patient_pseudonym, result.study_uid, str(out.get("AccessionNumber", "")), offset)
            seen[original.StudyInstanceUID] = facts
            released.append(Released(str(original.PatientID), str(original.get("IssuerOfPatientID", "")),
                                     original.StudyInstanceUID, str(original.get("AccessionNumber", "")),
                                     result.patient_pseudonym, result.study_uid, "B1" if release else None))
        report = record_released(ledger, store, {store.secret_fp: Derivation.for_plan(plan, secret, cfg.site_id)},
                                 released, source="pipeline")
        assert report.mismatched == [] and report.studies == len(seen)
        stored = {s.entry.study_uid: s.entry for s in store.entries()}
    # the derivation the write path used reproduces every value the engine wrote
    assert {u: (e.pseudonym, e.new_study_uid, e.new_accession, e.date_offset) for u, e in stored.items()} == seen
    return seen


def stored_entries(home: Path) -> set[tuple]:
    """Every stored mapping entry (decrypted) as comparable tuples with its secret fingerprint."""
    paths = HomePaths(home)
    with open_ledger(paths.state_db) as ledger:
        store = MappingStore.open(ledger, paths)
        return {(*s.entry.comparable(), s.secret_fp) for s in store.entries()}
