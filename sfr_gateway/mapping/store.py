"""The local pseudonym mapping: pseudonym <-> local patient ID and issuer, accession numbers,
original <-> new Study Instance UIDs, date offset. It never leaves the site.

At rest every row is sealed with AES-256-GCM under a key derived from ``HOME/keys/mapping.key``
(32 random bytes, 0600, created on first use or by ``init``). Lookups go through keyed indexes
(HMAC of the pseudonym, of the patient key, of the patient ID) under a second derived key, so a
lookup decrypts only the rows it finds and the table reveals nothing without the key file.

The pipeline calls :func:`record_study` when a study is de-identified and :func:`record_released`
when its batch is sent; ``mapping regenerate`` (:mod:`sfr_gateway.mapping.regenerate`) rebuilds the
table from the exports and the pseudonym secret and compares it with what was released.

Nothing here logs or raises with a patient value; pseudonyms and counts only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import KeyFileError, MappingError
from ..home.config import Config, HomePaths
from ..home.fsutil import atomic_write_text
from ..keys.files import (
    check_key_permissions,
    ensure_keys_dir,
    load_pseudonym_secret,
    secret_fingerprint,
)
from ..ledger import Ledger
from ..ledger import mapping as sql
from ..ledger.db import utcnow

MAPPING_KEY_HEADER = "sfr-gateway mapping key v1"
ENTRY_FORMAT = 1


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
        return _patient_key(self.patient_id, self.issuer, self.study_uid)

    def comparable(self) -> tuple[Any, ...]:
        """The values two mappings must agree on."""
        return (self.pseudonym, self.patient_id, self.issuer, self.study_uid, self.new_study_uid,
                self.accession, self.new_accession, self.date_offset)


@dataclass(frozen=True)
class StoredEntry:
    """A decrypted row: the entry and the facts about how it was derived."""

    entry: MappingEntry
    secret_fp: str
    source: str


@dataclass(frozen=True)
class PatientMatch:
    """What a lookup answers for one patient (and one pseudonym secret)."""

    pseudonym: str
    patient_id: str
    issuer: str
    date_offset: int | None
    secret_fp: str
    current_secret: bool
    studies: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _patient_key(patient_id: str, issuer: str, fallback: str) -> str:
    """The engine's canonical patient key (imported on use: the deid package pulls pydicom)."""
    from ..deid.pseudonym import patient_key

    return patient_key(patient_id, issuer, fallback)


# --------------------------------------------------------------------------- the key file


def create_mapping_key(home: HomePaths) -> bool:
    """Generate ``keys/mapping.key`` (0600) unless present. True if created."""
    ensure_keys_dir(home)
    if home.mapping_key.exists():
        return False
    atomic_write_text(home.mapping_key, f"{MAPPING_KEY_HEADER}\n{secrets.token_bytes(32).hex()}\n", 0o600)
    return True


def load_mapping_key(home: HomePaths, *, create: bool = True) -> bytes:
    """The 32-byte mapping key (created on first use when ``create``); KeyFileError if bad."""
    check_key_permissions(home)
    if create:
        create_mapping_key(home)
    try:
        lines = home.mapping_key.read_text(encoding="ascii").strip().splitlines()
    except FileNotFoundError:
        raise KeyFileError(f"no mapping key at {home.mapping_key}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {home.mapping_key}: {exc.__class__.__name__}") from None
    try:
        if len(lines) != 2 or lines[0] != MAPPING_KEY_HEADER:
            raise ValueError
        key = bytes.fromhex(lines[1])
        if len(key) != 32:
            raise ValueError
    except ValueError:
        raise KeyFileError(f"{home.mapping_key}: not an sfr-gateway mapping key file") from None
    return key


# --------------------------------------------------------------------------- the store


class MappingStore:
    """Seal, index, store and look up mapping entries in one ledger."""

    def __init__(self, ledger: Ledger, mapping_key: bytes, secret: bytes) -> None:
        self.ledger = ledger
        self._seal_key = hmac.new(mapping_key, b"sfr-gateway/mapping/seal", hashlib.sha256).digest()
        self._index_key = hmac.new(mapping_key, b"sfr-gateway/mapping/index", hashlib.sha256).digest()
        self.key_id = hmac.new(mapping_key, b"sfr-gateway/mapping/id", hashlib.sha256).hexdigest()[:16]
        self.secret_fp = secret_fingerprint(secret)
        self._aead = AESGCM(self._seal_key)

    @classmethod
    def open(cls, ledger: Ledger, home: HomePaths) -> MappingStore:
        """The store of HOME: its mapping key (created if missing) and current pseudonym secret."""
        return cls(ledger, load_mapping_key(home), load_pseudonym_secret(home))

    # -- keyed references (no clear value is ever stored outside the sealed blob)
    def ref(self, kind: str, value: str) -> bytes:
        return hmac.new(self._index_key, kind.encode("ascii") + b"\x00" + value.encode("utf-8"),
                        hashlib.sha256).digest()

    def patient_ref(self, patient_id: str, issuer: str, study_uid: str = "") -> bytes:
        return self.ref("patient", _patient_key(patient_id, issuer, study_uid))

    def pid_ref(self, patient_id: str) -> bytes:
        return self.ref("pid", patient_id.strip())

    def pseudonym_ref(self, pseudonym: str) -> bytes:
        return self.ref("pseudonym", pseudonym.strip())

    def study_ref(self, entry: MappingEntry, secret_fp: str) -> bytes:
        return self.ref("study", f"{secret_fp}\x00{entry.patient_key}\x00{entry.study_uid}")

    # -- sealing
    def seal(self, entry: MappingEntry, secret_fp: str | None = None, source: str = "pipeline") -> sql.SealedRow:
        fp = secret_fp or self.secret_fp
        study_ref = self.study_ref(entry, fp)
        plain = json.dumps({"v": ENTRY_FORMAT, **asdict(entry)}, sort_keys=True, ensure_ascii=False).encode("utf-8")
        nonce = os.urandom(12)
        return sql.SealedRow(
            study_ref=study_ref,
            patient_ref=self.ref("patient", entry.patient_key),
            pid_ref=self.pid_ref(entry.patient_id),
            pseudonym_ref=self.pseudonym_ref(entry.pseudonym),
            sealed=nonce + self._aead.encrypt(nonce, plain, study_ref),
            key_id=self.key_id, secret_fp=fp, source=source,
        )

    def unseal(self, row: sql.SealedRow) -> StoredEntry:
        if row.key_id != self.key_id:
            raise MappingError(
                f"a mapping row is sealed under mapping key {row.key_id}, not the current {self.key_id}: "
                "restore the old keys/mapping.key, or rebuild with `sfr-gateway mapping regenerate --discard-unreadable`")
        try:
            plain = self._aead.decrypt(row.sealed[:12], row.sealed[12:], row.study_ref)
        except InvalidTag:
            raise MappingError("a mapping row does not decrypt (altered, or moved between rows)") from None
        data = json.loads(plain)
        data.pop("v", None)
        return StoredEntry(MappingEntry(**data), row.secret_fp, row.source)

    # -- writing
    def record(self, entries: Iterable[MappingEntry], *, secret_fp: str | None = None,
               source: str = "pipeline") -> int:
        """Store ``entries`` (idempotent per study, patient and secret).

        A study already mapped under the same secret to another pseudonym is refused: that
        means the derivation changed under our feet (MappingError, nothing written).
        """
        rows = []
        for entry in entries:
            row = self.seal(entry, secret_fp, source)
            old = sql.get_row(self.ledger, row.study_ref)
            if old is not None:
                before = self.unseal(old).entry
                if before.pseudonym != entry.pseudonym or before.new_study_uid != entry.new_study_uid:
                    raise MappingError(
                        f"study already mapped to pseudonym {before.pseudonym}, now {entry.pseudonym}: "
                        "the site id or the derivation changed; run `sfr-gateway mapping verify`")
                if not entry.accession and before.accession:
                    row = self.seal(MappingEntry(**{**asdict(entry), "accession": before.accession,
                                                    "new_accession": before.new_accession}), secret_fp, source)
            rows.append(row)
        return sql.upsert_rows(self.ledger, rows)

    def record_released(self, items: Iterable[tuple[str, str, str, str, str]], batch_id: str = "") -> int:
        """Record (pseudonym, new study UID, patient ID, issuer, original study UID) as sent."""
        now = utcnow()
        return sql.record_released(self.ledger, [
            sql.ReleasedRow(pseudonym=p, new_study_uid=u, patient_ref=self.patient_ref(pid, iss, suid),
                            key_id=self.key_id, secret_fp=self.secret_fp, batch_id=batch_id, released_at=now)
            for p, u, pid, iss, suid in items
        ])

    # -- reading
    def entries(self) -> Iterator[StoredEntry]:
        """Every stored entry, decrypted (export, verify, regenerate)."""
        for row in sql.all_rows(self.ledger):
            yield self.unseal(row)

    def lookup_pseudonym(self, pseudonym: str) -> list[PatientMatch]:
        return self._group(sql.rows_by(self.ledger, "pseudonym_ref", self.pseudonym_ref(pseudonym)))

    def lookup_patient(self, patient_id: str, issuer: str | None = None) -> list[PatientMatch]:
        """By patient ID and issuer, or by ID alone (every issuer) when ``issuer`` is None."""
        if issuer is None:
            rows = sql.rows_by(self.ledger, "pid_ref", self.pid_ref(patient_id))
        else:
            rows = sql.rows_by(self.ledger, "patient_ref", self.patient_ref(patient_id, issuer))
        return self._group(rows)

    def _group(self, rows: list[sql.SealedRow]) -> list[PatientMatch]:
        out: dict[tuple[str, str, str, str], PatientMatch] = {}
        for row in rows:
            stored = self.unseal(row)
            e = stored.entry
            key = (e.pseudonym, e.patient_id, e.issuer, stored.secret_fp)
            match = out.get(key)
            if match is None:
                match = out[key] = PatientMatch(e.pseudonym, e.patient_id, e.issuer, e.date_offset,
                                                stored.secret_fp, stored.secret_fp == self.secret_fp)
            match.studies.append({"study_uid": e.study_uid, "new_study_uid": e.new_study_uid,
                                  "accession": e.accession, "new_accession": e.new_accession})
        return sorted(out.values(), key=lambda m: (not m.current_secret, m.pseudonym, m.issuer))


# --------------------------------------------------------------------------- pipeline API


def record_study(
    ledger: Ledger,
    home: HomePaths,
    *,
    patient_id: str,
    issuer: str,
    pseudonym: str,
    accession: str,
    study_uid: str,
    new_study_uid: str,
    date_offset: int | None,
    new_accession: str = "",
    store: MappingStore | None = None,
) -> None:
    """Record one de-identified study in the mapping (call it once per study, or per file: idempotent).

    Pass ``store`` (``MappingStore.open(ledger, home)``) to avoid re-reading the key files per call.
    """
    store = store or MappingStore.open(ledger, home)
    store.record([MappingEntry(pseudonym=pseudonym, patient_id=patient_id.strip(), issuer=issuer.strip(),
                               study_uid=study_uid.strip(), new_study_uid=new_study_uid,
                               accession=accession.strip(), new_accession=new_accession,
                               date_offset=date_offset)])


def record_released(
    ledger: Ledger,
    home: HomePaths,
    *,
    pseudonym: str,
    new_study_uid: str,
    patient_id: str,
    issuer: str,
    study_uid: str = "",
    batch_id: str = "",
    store: MappingStore | None = None,
) -> None:
    """Record that ``pseudonym`` (with ``new_study_uid``) was sent in ``batch_id``.

    ``mapping regenerate`` later checks every released pseudonym against a recomputation.
    """
    store = store or MappingStore.open(ledger, home)
    store.record_released([(pseudonym, new_study_uid, patient_id.strip(), issuer.strip(), study_uid.strip())],
                          batch_id)


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
        from .sync import sync_from_batches

        sync_from_batches(ledger, config, store)
    if pseudonym is not None:
        kind = "pseudonym"
        matches = store.lookup_pseudonym(pseudonym)
    else:
        kind = "patient-id+issuer" if issuer is not None else "patient-id"
        matches = store.lookup_patient(patient_id or "", issuer)
    ledger.record_event("mapping lookup", "lookup", "found" if matches else "not-found",
                        {"by": kind, "patients": len(matches),
                         "studies": sum(len(m.studies) for m in matches)})
    return matches
