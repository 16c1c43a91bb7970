"""Who is this pseudonym, what is this patient's: the DPO's lookups, each one recorded (never
its value) in the audit trail. Batches packaged since the last sync are mapped first.
"""

from __future__ import annotations

from ..home.config import Config, HomePaths
from ..ledger import Ledger
from .store import MappingStore, PatientMatch
from .sync import sync_from_batches


def lookup(
    ledger: Ledger,
    home: HomePaths,
    *,
    pseudonym: str | None = None,
    patient_id: str | None = None,
    issuer: str | None = None,
    config: Config | None = None,
) -> list[PatientMatch]:
    """Look up by pseudonym or by patient ID (and issuer); records the query (never its value) in events.

    With ``config``, batches the pipeline packaged since the last sync are mapped first.
    """
    if (pseudonym is None) == (patient_id is None):
        raise ValueError("look up by a pseudonym or by a patient ID, not both")
    store = MappingStore.open(ledger, home)
    if config is not None:
        sync_from_batches(ledger, config, store)
    if pseudonym is not None:
        kind = "pseudonym"
        typed = pseudonym.strip()
        matches = store.lookup_pseudonym(typed)
        if not matches and typed.upper() != typed:  # the gateway's pseudonyms are upper case (site id, base32)
            matches = store.lookup_pseudonym(typed.upper())
    else:
        kind = "patient-id+issuer" if issuer is not None else "patient-id"
        matches = store.lookup_patient(patient_id or "", issuer)
    ledger.record_event("mapping lookup", "lookup", "found" if matches else "not-found",
                        {"by": kind, "patients": len(matches),
                         "studies": sum(len(m.studies) for m in matches)})
    return matches
