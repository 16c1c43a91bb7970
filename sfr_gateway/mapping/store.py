"""The local pseudonym mapping: pseudonym <-> local patient ID and issuer, accession numbers,
original <-> new Study Instance UIDs, date offset. It never leaves the site.

At rest every row is sealed with AES-256-GCM under a key derived from ``HOME/keys/mapping.key``
(32 random bytes, 0600, created on first use or by ``init``). Lookups go through keyed indexes
(HMAC of the pseudonym, of the patient key, of the patient ID) under a second derived key, so a
lookup decrypts only the rows it finds and the table reveals nothing without the key file.

Entries are written by one path, :func:`sfr_gateway.mapping.sync.record_released` (through
:meth:`MappingStore.record`): ``run`` after packaging, ``deidentify`` after writing;
``mapping regenerate`` (:mod:`sfr_gateway.mapping.regenerate`) rebuilds the table from the
exports and the pseudonym secret, compares it with what was released, and records through
:meth:`MappingStore.record` too.

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

from ..deid.pseudonym import patient_key
from ..errors import KeyFileError, MappingError
from ..home.config import HomePaths
from ..home.fsutil import atomic_write_text
from ..keys.files import (
    check_key_permissions,
    ensure_keys_dir,
    load_pseudonym_secret,
    secret_fingerprint,
)
from ..ledger import Ledger
from ..ledger import mapping as sql
from .derive import MappingEntry

MAPPING_KEY_HEADER = "sfr-gateway mapping key v1"
ENTRY_FORMAT = 1


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
        return self.ref("patient", patient_key(patient_id, issuer, study_uid))

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
