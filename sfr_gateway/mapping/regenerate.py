"""Rebuild the mapping from the exports and the pseudonym secret, and check it.

Pseudonyms are deterministic (keyed HMAC), so the whole mapping can be recomputed from the
instance index of the ledger (patient ID, issuer, study UID), refreshed by a rescan of the
exports when folders are given, plus one header read per study for its accession number.

Both ``regenerate`` and ``verify`` compare with what was already released: a released pseudonym
that the current secret no longer reproduces means the secret changed, and they say so
(MappingError, exit 14) instead of writing a mapping that no longer matches the central host's.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deid.pseudonym import Pseudonymizer, PseudonymKeys
from ..errors import KeyFileError, MappingError
from ..home.config import Config, HomePaths
from ..keys.files import decode_secret, load_pseudonym_secret, secret_fingerprint
from ..ledger import Ledger
from ..ledger import mapping as sql
from .store import MappingEntry, MappingStore

log = logging.getLogger(__name__)

ACCESSION_TAG = 0x00080050
ACCESSION_MAX_LEN = 16  # SH
ARCHIVE_DIR = "archive"


@dataclass(frozen=True)
class Derivation:
    """How the pipeline derives the mapped values (the profile's offset range and accession purpose)."""

    pz: Pseudonymizer
    accession_purpose: str | None

    @classmethod
    def for_config(cls, cfg: Config, secret: bytes) -> Derivation:
        from ..deid.profile import compile_plan, load_profile

        plan = compile_plan(load_profile(cfg.profile, options=cfg.options))
        pz = Pseudonymizer(PseudonymKeys(secret=secret, site_id=cfg.site_id), offset_range=plan.offset_range)
        return cls(pz, plan.pseudonyms.get(ACCESSION_TAG))

    def entry(self, patient_id: str, issuer: str, study_uid: str, accession: str) -> MappingEntry:
        """The mapping entry the pipeline records for this study."""
        e = MappingEntry(pseudonym="", patient_id=patient_id.strip(), issuer=issuer.strip(),
                         study_uid=study_uid.strip(), new_study_uid="", accession=accession.strip())
        pkey = e.patient_key
        new_acc = ""
        if e.accession and self.accession_purpose:
            new_acc = "\\".join(self.pz.identifier(self.accession_purpose, v.strip(), ACCESSION_MAX_LEN)
                                for v in e.accession.split("\\"))
        return MappingEntry(
            pseudonym=self.pz.patient(pkey), patient_id=e.patient_id, issuer=e.issuer, study_uid=e.study_uid,
            new_study_uid=self.pz.uid(e.study_uid), accession=e.accession, new_accession=new_acc,
            date_offset=self.pz.date_offset(pkey),
        )


_FIELDS = ("pseudonym", "patient_id", "issuer", "study_uid", "new_study_uid", "accession", "new_accession",
           "date_offset")


def differing_fields(new: MappingEntry, stored: MappingEntry) -> list[str]:
    """Fields where a recomputation and a stored entry disagree.

    Values the stored entry does not know (an empty accession or its keyed value, no date
    offset: the caller did not pass them) are not held against it.
    """
    out = []
    for name, a, b in zip(_FIELDS, new.comparable(), stored.comparable(), strict=True):
        if name in ("accession", "new_accession", "date_offset") and b in ("", None):
            continue
        if name in ("accession", "new_accession") and a == "":
            continue
        if a != b:
            out.append(name)
    return out


def agree(new: MappingEntry, stored: MappingEntry) -> bool:
    return not differing_fields(new, stored)


@dataclass
class CheckReport:
    """What regenerate or verify found. ``mismatches`` name pseudonyms and causes, never values."""

    studies: int = 0
    patients: int = 0
    added: int = 0
    unchanged: int = 0
    accession_unread: int = 0
    released_checked: int = 0
    released_ok: int = 0
    released_unverified: int = 0
    released_rotated: int = 0
    stored_checked: int = 0
    stored_ok: int = 0
    stored_other_secret: int = 0
    discarded: int = 0
    secret_fingerprint: str = ""
    causes: list[str] = field(default_factory=list)
    mismatches: list[dict[str, str]] = field(default_factory=list)
    written: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fail_if_mismatched(self, what: str) -> None:
        if self.causes:
            raise MappingError(f"{what}: " + "; ".join(self.causes))


def archived_secrets(home: HomePaths) -> dict[str, bytes]:
    """Pseudonym secrets retired by ``keys rotate-pseudonym`` (keys/archive/), by fingerprint."""
    out: dict[str, bytes] = {}
    folder = home.keys / ARCHIVE_DIR
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("pseudonym-*.key")):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise KeyFileError(f"{path} is readable by group or others (run: chmod 600 {path})")
        try:
            secret = decode_secret(path.read_text(encoding="ascii"), str(path))
        except (OSError, UnicodeDecodeError, KeyFileError):
            log.warning("archived secret %s is unreadable: skipped", path.name)
            continue
        out[secret_fingerprint(secret)] = secret
    return out


def read_accession(paths: Sequence[bytes]) -> str | None:
    """The Accession Number of the first readable file (header only); None if none is readable."""
    import pydicom

    for raw in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(os.fsdecode(raw), stop_before_pixels=True, force=True,
                                     specific_tags=["SpecificCharacterSet", "AccessionNumber"])
            value = ds.get("AccessionNumber", "")
            return str(value or "").strip()
        except Exception as exc:  # noqa: BLE001 - any unreadable file: try the next one of the study
            log.debug("accession: header unreadable (%s), trying the next file", type(exc).__name__)
    return None


def compute(ledger: Ledger, derivation: Derivation, *, eligible_only: bool = True,
            study_uids: Sequence[str] | None = None,
            progress: Callable[[int], None] | None = None) -> tuple[list[MappingEntry], int]:
    """Recompute the mapping of every study in the index (or of ``study_uids``);
    returns (entries, accessions unread)."""
    entries: list[MappingEntry] = []
    unread = 0
    for study_uid, pid, issuer, paths in sql.candidate_studies(ledger, eligible_only, study_uids):
        accession = read_accession(paths)
        if accession is None:
            unread += 1
        entries.append(derivation.entry(pid, issuer, study_uid, accession or ""))
        if progress:
            progress(1)
    return entries, unread


def record_index_studies(
    ledger: Ledger,
    cfg: Config,
    study_uids: Sequence[str],
    *,
    released_batch: str | None = None,
    store: MappingStore | None = None,
    derivation: Derivation | None = None,
) -> int:
    """Pipeline helper: map the given original studies from the ledger's index (one header read
    per study for the accession), and, with ``released_batch``, record them as released.

    Same derivation as the engine (the tests compare both), so the pipeline needs to pass
    nothing but the study UIDs it de-identified. Returns the number of studies recorded.
    """
    store = store or MappingStore.open(ledger, cfg.home)
    derivation = derivation or Derivation.for_config(cfg, load_pseudonym_secret(cfg.home))
    entries, _ = compute(ledger, derivation, eligible_only=False, study_uids=study_uids)
    store.record(entries)
    if released_batch is not None:
        store.record_released([(e.pseudonym, e.new_study_uid, e.patient_id, e.issuer, e.study_uid) for e in entries],
                              released_batch)
    return len(entries)


def _check_released(store: MappingStore, ledger: Ledger, entries: list[MappingEntry],
                    report: CheckReport, rotated: dict[str, str]) -> None:
    by_patient: dict[bytes, list[MappingEntry]] = {}
    by_new_study: dict[str, MappingEntry] = {}
    for e in entries:
        by_patient.setdefault(store.ref("patient", e.patient_key), []).append(e)
        by_new_study[e.new_study_uid] = e
    other_fp: dict[str, int] = {}
    differs = 0
    prefixes: set[str] = set()
    for rel in sql.released(ledger):
        report.released_checked += 1
        if rel.secret_fp != report.secret_fingerprint:
            if rel.secret_fp in rotated:
                report.released_rotated += 1
                continue
            other_fp[rel.secret_fp] = other_fp.get(rel.secret_fp, 0) + 1
            report.mismatches.append({"pseudonym": rel.pseudonym, "kind": "released-under-other-secret",
                                      "released_secret": rel.secret_fp})
            continue
        found = by_patient.get(rel.patient_ref or b"", []) if rel.key_id == store.key_id else []
        if not found and rel.new_study_uid in by_new_study:
            found = [by_new_study[rel.new_study_uid]]
        if not found:
            report.released_unverified += 1
            continue
        if any(e.pseudonym == rel.pseudonym for e in found):
            report.released_ok += 1
            continue
        differs += 1
        prefixes.add(f"{rel.pseudonym.rsplit('-', 1)[0]} -> {found[0].pseudonym.rsplit('-', 1)[0]}")
        report.mismatches.append({"pseudonym": rel.pseudonym, "kind": "released-pseudonym-differs",
                                  "recomputed": found[0].pseudonym})
    for fp, n in sorted(other_fp.items()):
        report.causes.append(
            f"the pseudonym secret changed: {n} released pseudonym(s) were derived under secret "
            f"{fp}, the current secret is {report.secret_fingerprint} (restore the escrowed secret "
            "with `sfr-gateway keys restore`)")
    if differs:
        report.causes.append(
            f"{differs} released pseudonym(s) are not reproduced by the current secret and site id "
            f"(site prefix {', '.join(sorted(prefixes))}): the site id or the derivation changed")


def regenerate(
    ledger: Ledger,
    cfg: Config,
    sources: Sequence[Path] = (),
    *,
    eligible_only: bool = True,
    dry_run: bool = False,
    discard_unreadable: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Rebuild the mapping from the index (rescanning ``sources`` first) and the pseudonym secret.

    Compares with every released pseudonym and with the stored mapping; on any mismatch nothing
    is written and MappingError names the cause. Stored rows that the sources no longer
    reproduce (files deleted) are kept. Rows sealed under another mapping key (keys/mapping.key
    lost or replaced) stop the run unless ``discard_unreadable`` drops them first.
    """
    home = cfg.home
    if sources:
        from ..scan.walk import scan

        scan(ledger, list(sources), cfg.selection)
    secret = load_pseudonym_secret(home)
    store = MappingStore.open(ledger, home)
    report = CheckReport(secret_fingerprint=store.secret_fp)
    foreign = sql.count_rows_of_other_keys(ledger, store.key_id)
    if foreign and not discard_unreadable:
        raise MappingError(
            f"{foreign} mapping row(s) are sealed under another mapping key than keys/mapping.key "
            f"({store.key_id}): restore the old key file, or re-run with --discard-unreadable to rebuild them")
    if foreign and not dry_run:
        report.discarded = sql.delete_rows_of_other_keys(ledger, store.key_id)
    if not dry_run:
        from .sync import sync_from_batches

        synced = sync_from_batches(ledger, cfg, store)
        if synced.mismatched:
            report.causes.append(synced.cause(store.secret_fp))
    entries, report.accession_unread = compute(ledger, Derivation.for_config(cfg, secret),
                                               eligible_only=eligible_only, progress=progress)
    report.studies = len(entries)
    report.patients = len({e.patient_key for e in entries})
    rotated = sql.rotated_fingerprints(ledger)
    _check_released(store, ledger, entries, report, rotated)
    new_refs = {store.study_ref(e, store.secret_fp): e for e in entries}
    archived = archived_secrets(home)
    other_fp: dict[str, int] = {}
    for row in sql.all_rows(ledger):
        if row.key_id != store.key_id:
            continue  # dry run with --discard-unreadable: these rows would be dropped
        report.stored_checked += 1
        if row.secret_fp != store.secret_fp:
            if row.secret_fp not in rotated and row.secret_fp not in archived:
                other_fp[row.secret_fp] = other_fp.get(row.secret_fp, 0) + 1
            else:
                report.stored_other_secret += 1
            continue
        stored = store.unseal(row).entry
        new = new_refs.get(row.study_ref)
        if new is None:
            continue
        if new.accession == "" and stored.accession:
            new = MappingEntry(**{**new.__dict__, "accession": stored.accession, "new_accession": stored.new_accession})
            new_refs[row.study_ref] = new
        if agree(new, stored):
            report.unchanged += 1
            report.stored_ok += 1
        else:
            report.mismatches.append({"pseudonym": stored.pseudonym, "kind": "stored-entry-differs"})
    for fp, n in sorted(other_fp.items()):
        report.causes.append(
            f"the pseudonym secret changed: {n} stored mapping row(s) were derived under secret {fp}, "
            f"the current secret is {store.secret_fp}")
    stored_differs = sum(1 for m in report.mismatches if m["kind"] == "stored-entry-differs")
    if stored_differs:
        report.causes.append(f"{stored_differs} stored mapping row(s) differ from the recomputation")
    report.added = len(entries) - report.unchanged
    detail = {k: v for k, v in report.as_dict().items() if k not in ("mismatches", "causes")}
    if report.causes:
        ledger.record_event("mapping regenerate", "regenerate", "mismatch", {**detail, "causes": len(report.causes)})
        report.fail_if_mismatched("mapping regenerate refused to write")
    if not dry_run:
        store.record(new_refs.values(), source="regenerate")
        report.written = True
    ledger.record_event("mapping regenerate", "regenerate", "ok", {**detail, "written": report.written})
    return report


def verify(ledger: Ledger, cfg: Config) -> CheckReport:
    """Check every stored entry against a recomputation with the secret it was derived under,
    and that every released pseudonym is in the mapping. MappingError on any disagreement."""
    home = cfg.home
    secret = load_pseudonym_secret(home)
    store = MappingStore.open(ledger, home)
    report = CheckReport(secret_fingerprint=store.secret_fp)
    from .sync import sync_from_batches

    synced = sync_from_batches(ledger, cfg, store)
    if synced.mismatched:
        report.causes.append(synced.cause(store.secret_fp))
    secrets_by_fp = {**archived_secrets(home), store.secret_fp: secret}
    derivations: dict[str, Derivation] = {}
    unknown: dict[str, int] = {}
    pseudonyms: set[str] = set()
    for row in sql.all_rows(ledger):
        report.stored_checked += 1
        stored = store.unseal(row).entry
        pseudonyms.add(stored.pseudonym)
        if row.secret_fp not in secrets_by_fp:
            unknown[row.secret_fp] = unknown.get(row.secret_fp, 0) + 1
            report.mismatches.append({"pseudonym": stored.pseudonym, "kind": "unknown-secret"})
            continue
        if row.secret_fp != store.secret_fp:
            report.stored_other_secret += 1
        if row.secret_fp not in derivations:
            derivations[row.secret_fp] = Derivation.for_config(cfg, secrets_by_fp[row.secret_fp])
        again = derivations[row.secret_fp].entry(stored.patient_id, stored.issuer, stored.study_uid, stored.accession)
        if agree(again, stored):
            report.stored_ok += 1
        else:
            fields = differing_fields(again, stored)
            report.mismatches.append({"pseudonym": stored.pseudonym, "kind": "differs", "fields": ",".join(fields)})
    report.studies = report.stored_checked
    for fp, n in sorted(unknown.items()):
        report.causes.append(
            f"the pseudonym secret changed: {n} stored row(s) were derived under secret {fp}, which is "
            f"neither the current secret ({store.secret_fp}) nor an archived one")
    differs = [m for m in report.mismatches if m["kind"] == "differs"]
    if differs:
        report.causes.append(f"{len(differs)} stored row(s) differ from a recomputation "
                             f"(fields: {', '.join(sorted({m['fields'] for m in differs}))})")
    missing = 0
    for rel in sql.released(ledger):
        report.released_checked += 1
        if rel.pseudonym in pseudonyms:
            report.released_ok += 1
        else:
            missing += 1
            report.mismatches.append({"pseudonym": rel.pseudonym, "kind": "released-not-in-mapping"})
    if missing:
        report.causes.append(f"{missing} released pseudonym(s) are missing from the mapping "
                             "(run `sfr-gateway mapping regenerate`)")
    detail = {k: v for k, v in report.as_dict().items() if k not in ("mismatches", "causes")}
    ledger.record_event("mapping verify", "verify", "mismatch" if report.causes else "ok", detail)
    report.fail_if_mismatched("mapping verify failed")
    return report
