"""The mapping's one write path: what was released, recorded as the entries that derive it.

Both ways a study leaves the site's hands record here, through :func:`record_released`:

- ``run``: every packaged batch names its study, patient, pseudonym and new study UID
  (table ``batches``); :func:`sync_from_batches` records each batch not yet synced (cheap when
  nothing is new: one query, so lookups call it first), and marks its pseudonym as released.
- ``deidentify``: :class:`WrittenStudies` hears which studies were written under which
  pseudonym; :func:`record_written` reads one source header per study and records them.

:func:`record_released` derives each study's entry (``derive.Derivation``: the current secret,
or an archived one after a rotation) and checks that it reproduces what was released (pseudonym
and new study UID). A study that no known secret reproduces is never recorded: it is reported,
and ``mapping verify`` and ``regenerate`` then fail with exit 14 and name it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DicomError, GatewayError
from ..home.config import Config, HomePaths
from ..keys.files import archived_secrets, load_pseudonym_secret
from ..ledger import Ledger
from ..ledger import mapping as sql
from ..ledger.db import utcnow
from ..scan.header import read_header
from .derive import Derivation, MappingEntry, compute, read_accession
from .store import MappingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Released:
    """One study as it left: the source's identifiers and what it was released as (PHI: the
    patient ID). ``batch_id`` when it left in a batch (``run``), None when written to a folder."""

    patient_id: str
    issuer: str
    study_uid: str
    accession: str
    pseudonym: str
    new_study_uid: str
    batch_id: str | None = None


@dataclass
class SyncReport:
    """Studies recorded (and batches among them), and the pseudonyms no known secret reproduces."""

    batches: int = 0
    studies: int = 0
    mismatched: list[str] = field(default_factory=list)
    prefixes: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "studies": self.studies, "mismatched": len(self.mismatched)}

    def cause(self, current_fp: str) -> str:
        prefix = f" (site prefix {', '.join(sorted(self.prefixes))})" if self.prefixes else ""
        return (f"{len(self.mismatched)} batch(es) carry pseudonyms that neither the current secret "
                f"({current_fp}) nor an archived one reproduces{prefix}: the pseudonym secret or the "
                f"site id changed after they were made (pseudonyms: {', '.join(sorted(set(self.mismatched))[:5])})")


def record_released(ledger: Ledger, store: MappingStore, derivations: Mapping[str, Derivation],
                    released: Iterable[Released], *, source: str, event: str = "sync") -> SyncReport:
    """Record the entry of every study in ``released`` under the secret (by fingerprint, in
    ``derivations``) that reproduces its pseudonym and new study UID; a study with a
    ``batch_id`` is also recorded as sent. Never raises for a mismatch: it is reported."""
    report = SyncReport()
    current = derivations[store.secret_fp]
    by_fp: dict[str, list[MappingEntry]] = {}
    sent: list[sql.ReleasedRow] = []
    for r in released:
        pid, issuer = r.patient_id.strip(), r.issuer.strip()
        for fp, derivation in derivations.items():
            entry = derivation.entry(pid, issuer, r.study_uid, r.accession)
            if entry.pseudonym == r.pseudonym and entry.new_study_uid == r.new_study_uid:
                by_fp.setdefault(fp, []).append(entry)
                if r.batch_id is not None:
                    sent.append(sql.ReleasedRow(r.pseudonym, r.new_study_uid, store.ref("patient", entry.patient_key),
                                                store.key_id, fp, r.batch_id, utcnow()))
                    report.batches += 1
                break
        else:
            report.mismatched.append(r.pseudonym)
            guess = current.entry(pid, issuer, r.study_uid, "").pseudonym
            if guess.rsplit("-", 1)[0] != r.pseudonym.rsplit("-", 1)[0]:
                report.prefixes.add(f"{r.pseudonym.rsplit('-', 1)[0]} -> {guess.rsplit('-', 1)[0]}")
    for fp, entries in by_fp.items():
        report.studies += store.record(entries, secret_fp=fp, source=source)
    if sent:
        sql.record_released(ledger, sent)
    if report.mismatched:
        log.warning("mapping: %d released stud(ies) not reproduced by any known pseudonym secret",
                    len(report.mismatched))
    ledger.record_event(f"mapping {event}", event, "mismatch" if report.mismatched else "ok", report.as_dict())
    return report


def known_derivations(cfg: Config, store: MappingStore) -> dict[str, Derivation]:
    """The site's derivation under the current secret (first) and every archived one."""
    secrets_by_fp = {store.secret_fp: load_pseudonym_secret(cfg.home), **archived_secrets(cfg.home)}
    return {fp: Derivation.for_config(cfg, s) for fp, s in secrets_by_fp.items()}


def sync_from_batches(ledger: Ledger, cfg: Config, store: MappingStore | None = None) -> SyncReport:
    """Map and mark as released every batch not yet synced (``run``'s side of the write path)."""
    pending = sql.unsynced_batches(ledger)
    if not pending:
        return SyncReport()
    store = store or MappingStore.open(ledger, cfg.home)
    derivations = known_derivations(cfg, store)
    studies = sorted({b.study_uid for b in pending})
    current, _ = compute(ledger, derivations[store.secret_fp], eligible_only=False, study_uids=studies)
    accessions = {(e.study_uid, e.patient_id, e.issuer): e.accession for e in current}
    released = [Released(b.patient_id, b.issuer, b.study_uid,
                         accessions.get((b.study_uid, b.patient_id.strip(), b.issuer.strip()), ""),
                         b.pseudonym, b.new_study_uid, b.batch_id) for b in pending]
    return record_released(ledger, store, derivations, released, source="pipeline")


def sync_for_run(ledger: Ledger, cfg: Config) -> SyncReport | None:
    """The cron run's hook: sync, but never block delivery over the mapping (an error is logged
    and recorded; ``mapping verify`` names it)."""
    try:
        return sync_from_batches(ledger, cfg)
    except GatewayError as exc:
        log.error("mapping not updated (%s): %s; run `sfr-gateway mapping verify`", type(exc).__name__, exc)
        ledger.record_event("mapping sync", "sync", "error", {"error": type(exc).__name__})
        return None


class WrittenStudies:
    """What ``deidentify`` wrote, study by study: give :meth:`on_file` to ``deid.folder.run``.

    Outputs are ``<patient pseudonym>/<new study UID>/...``; one source file per study is kept
    (its header gives the identifiers the entry is derived from)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], Path] = {}

    def on_file(self, path: Path, status: str, info: Mapping[str, str]) -> None:
        if status == "released":
            pseudonym, new_study = Path(info["output"]).parts[:2]
            self.first.setdefault((pseudonym, new_study), path)


def record_written(ledger: Ledger, home: HomePaths, derivation: Derivation, written: WrittenStudies) -> SyncReport | None:
    """``deidentify``'s side of the write path: record every study it wrote (``derivation``:
    the plan it used, the current secret). Never fails the command over the mapping: an error is
    logged and recorded, as for ``run``."""
    if not written.first:
        return None
    released = []
    for (pseudonym, new_study), path in sorted(written.first.items()):
        try:
            facts, _, _ = read_header(os.fsencode(path))
        except (DicomError, OSError):  # changed since it was de-identified: the next run maps it
            log.warning("mapping: %s unreadable now, its study is not recorded", path)
            continue
        accession = read_accession([os.fsencode(path)]) or ""
        released.append(Released(facts.patient_id, facts.issuer, facts.study_uid, accession, pseudonym, new_study))
    try:
        store = MappingStore.open(ledger, home)
        return record_released(ledger, store, {store.secret_fp: derivation}, released, source="deidentify",
                               event="record")
    except GatewayError as exc:
        log.error("mapping not updated (%s): %s; run `sfr-gateway mapping verify`", type(exc).__name__, exc)
        ledger.record_event("mapping record", "record", "error", {"error": type(exc).__name__})
        return None
