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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MappingError
from ..home.config import Config
from ..keys.files import archived_secrets, load_pseudonym_secret
from ..ledger import Ledger
from ..ledger import mapping as sql
from ..scan.walk import scan
from .derive import Derivation, MappingEntry, compute
from .store import MappingStore
from .sync import sync_from_batches

log = logging.getLogger(__name__)

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
