"""What a mapping entry holds and how it is derived: the same keyed derivations as the engine
(``deid.pseudonym``), from a study's patient ID, issuer, study UID and accession number.

Pseudonyms are deterministic (keyed HMAC), so an entry can always be recomputed from the
exports and the secret: ``sync`` derives what ``run`` released, ``regenerate`` the whole index,
and both compare with what was recorded. The ledger's index gives patient ID, issuer and study
UID; the accession number (not indexed) is read from one header per study.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..deid.pseudonym import Pseudonymizer, PseudonymKeys, patient_key
from ..home.config import Config
from ..ledger import Ledger
from ..ledger import mapping as sql

if TYPE_CHECKING:
    from ..deid.plan import Plan

log = logging.getLogger(__name__)

ACCESSION_TAG = 0x00080050
ACCESSION_MAX_LEN = 16  # SH


@dataclass(frozen=True)
class MappingEntry:
    """One de-identified study of one patient: every value the mapping keeps (PHI: handle with care)."""

    pseudonym: str
    patient_id: str
    issuer: str
    study_uid: str
    new_study_uid: str
    accession: str = ""
    new_accession: str = ""
    date_offset: int | None = None

    @property
    def patient_key(self) -> str:
        return patient_key(self.patient_id, self.issuer, self.study_uid)

    def comparable(self) -> tuple[Any, ...]:
        """The values two mappings must agree on."""
        return (self.pseudonym, self.patient_id, self.issuer, self.study_uid, self.new_study_uid,
                self.accession, self.new_accession, self.date_offset)


@dataclass(frozen=True)
class Derivation:
    """How the pipeline derives the mapped values (the profile's offset range and accession purpose)."""

    pz: Pseudonymizer
    accession_purpose: str | None

    @classmethod
    def for_config(cls, cfg: Config, secret: bytes) -> Derivation:
        """What ``run`` derives: the site's profile and options (a HOME's site overrides touch
        no derived value)."""
        from ..deid.profile import compile_plan, load_profile

        return cls.for_plan(compile_plan(load_profile(cfg.profile, options=cfg.options)), secret, cfg.site_id)

    @classmethod
    def for_plan(cls, plan: Plan, secret: bytes, site_id: str) -> Derivation:
        """What the engine derives with ``plan`` (``deidentify`` may name another profile)."""
        return cls(Pseudonymizer.for_plan(PseudonymKeys(secret=secret, site_id=site_id), plan),
                   plan.pseudonyms.get(ACCESSION_TAG))

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
