"""Keep the mapping in step with what the release pipeline packaged (table ``batches``).

Every batch names its study, patient, pseudonym and new study UID. ``sync_from_batches`` maps
each batch's study (header read for the accession number, same derivation as the engine), checks
that the current secret (or an archived one, after a rotation) reproduces the batch's pseudonym
and new study UID, and records the batch's pseudonym as released. A batch that no secret
reproduces is left unsynced and reported: ``mapping verify`` and ``regenerate`` then fail with
exit 14 and name it. Cheap when nothing is new (one query), so lookups call it first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError
from ..home.config import Config
from ..keys.files import load_pseudonym_secret
from ..ledger import Ledger
from ..ledger import mapping as sql
from ..ledger.db import utcnow
from .store import MappingEntry, MappingStore

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """Batches mapped, and the pseudonyms of batches no known secret reproduces."""

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


def sync_from_batches(ledger: Ledger, cfg: Config, store: MappingStore | None = None) -> SyncReport:
    """Map and mark as released every batch not yet synced; never raises for a mismatch."""
    report = SyncReport()
    pending = sql.unsynced_batches(ledger)
    if not pending:
        return report
    from .regenerate import Derivation, archived_secrets, compute

    store = store or MappingStore.open(ledger, cfg.home)
    secrets_by_fp = {store.secret_fp: load_pseudonym_secret(cfg.home), **archived_secrets(cfg.home)}
    derivations = {fp: Derivation.for_config(cfg, s) for fp, s in secrets_by_fp.items()}
    studies = sorted({b.study_uid for b in pending})
    accessions: dict[tuple[str, str, str], str] = {}
    current, _ = compute(ledger, derivations[store.secret_fp], eligible_only=False, study_uids=studies)
    for e in current:
        accessions[(e.study_uid, e.patient_id, e.issuer)] = e.accession
    by_fp: dict[str, list[MappingEntry]] = {}
    released: list[sql.ReleasedRow] = []
    for b in pending:
        pid, issuer = b.patient_id.strip(), b.issuer.strip()
        accession = accessions.get((b.study_uid, pid, issuer), "")
        for fp, derivation in derivations.items():
            entry = derivation.entry(pid, issuer, b.study_uid, accession)
            if entry.pseudonym == b.pseudonym and entry.new_study_uid == b.new_study_uid:
                by_fp.setdefault(fp, []).append(entry)
                released.append(sql.ReleasedRow(b.pseudonym, b.new_study_uid, store.ref("patient", entry.patient_key),
                                                store.key_id, fp, b.batch_id, utcnow()))
                report.batches += 1
                break
        else:
            report.mismatched.append(b.pseudonym)
            guess = derivations[store.secret_fp].entry(pid, issuer, b.study_uid, "").pseudonym
            if guess.rsplit("-", 1)[0] != b.pseudonym.rsplit("-", 1)[0]:
                report.prefixes.add(f"{b.pseudonym.rsplit('-', 1)[0]} -> {guess.rsplit('-', 1)[0]}")
    for fp, entries in by_fp.items():
        report.studies += store.record(entries, secret_fp=fp, source="pipeline")
    sql.record_released(ledger, released)
    if report.mismatched:
        log.warning("mapping: %d batch(es) not reproduced by any known pseudonym secret", len(report.mismatched))
    ledger.record_event("mapping sync", "sync", "mismatch" if report.mismatched else "ok", report.as_dict())
    return report


def sync_for_run(ledger: Ledger, cfg: Config) -> SyncReport | None:
    """The cron run's hook: sync, but never block delivery over the mapping (an error is logged
    and recorded; ``mapping verify`` names it)."""
    try:
        return sync_from_batches(ledger, cfg)
    except GatewayError as exc:
        log.error("mapping not updated (%s): %s; run `sfr-gateway mapping verify`", type(exc).__name__, exc)
        ledger.record_event("mapping sync", "sync", "error", {"error": type(exc).__name__})
        return None
