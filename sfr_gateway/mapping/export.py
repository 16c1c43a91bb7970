"""Export the mapping for the data-protection officer, encrypted to their age key.

The clear text (CSV or JSON) exists only in memory: what reaches the disk is an age v1 file
(``age -d -i DPO_KEY FILE``) written atomically with mode 0600.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..crypto.age import Recipient, encrypt_bytes
from ..home.config import Config
from ..home.fsutil import atomic_write_bytes
from ..ledger import Ledger
from ..ledger.db import utcnow
from .store import MappingStore, StoredEntry
from .sync import sync_from_batches

CSV_COLUMNS = ("pseudonym", "patient_id", "issuer", "accession", "new_accession", "study_uid",
               "new_study_uid", "date_offset", "secret_fingerprint", "current_secret")
FORMATS = ("csv", "json")


@dataclass(frozen=True)
class ExportResult:
    output: Path
    format: str
    entries: int
    patients: int
    recipient: str


def _rows(entries: list[StoredEntry], current_fp: str) -> list[dict[str, str]]:
    rows = []
    for s in entries:
        e = s.entry
        rows.append({
            "pseudonym": e.pseudonym, "patient_id": e.patient_id, "issuer": e.issuer, "accession": e.accession,
            "new_accession": e.new_accession, "study_uid": e.study_uid, "new_study_uid": e.new_study_uid,
            "date_offset": "" if e.date_offset is None else str(e.date_offset),
            "secret_fingerprint": s.secret_fp, "current_secret": "yes" if s.secret_fp == current_fp else "no",
        })
    rows.sort(key=lambda r: (r["current_secret"] != "yes", r["pseudonym"], r["study_uid"]))  # noqa: S105 - a column name
    return rows


def render(rows: list[dict[str, str]], fmt: str, site_id: str) -> bytes:
    """The clear export (in memory only): CSV with a header line, or JSON."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8")
    if fmt == "json":
        doc = {"format": "sfr-gateway-mapping/1", "site": site_id, "created": utcnow(), "entries": rows}
        return (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


def default_output(site_id: str, fmt: str) -> Path:
    return Path.cwd() / f"sfr-gateway-mapping-{site_id}-{utcnow()[:10]}.{fmt}.age"


def export_mapping(ledger: Ledger, cfg: Config, recipient: str, *, fmt: str = "csv",
                   output: Path | None = None) -> ExportResult:
    """Encrypt the whole mapping to ``recipient`` (an ``age1...`` key) into ``output``; never in clear."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    rcpt = Recipient.parse(recipient)
    store = MappingStore.open(ledger, cfg.home)
    sync_from_batches(ledger, cfg, store)
    rows = _rows(list(store.entries()), store.secret_fp)
    out = Path(output) if output else default_output(cfg.site_id, fmt)
    atomic_write_bytes(out, encrypt_bytes(render(rows, fmt, cfg.site_id), [rcpt]), 0o600)
    result = ExportResult(out, fmt, len(rows), len({r["pseudonym"] for r in rows}), str(rcpt))
    ledger.record_event("mapping export", "export", "ok", {
        "format": fmt, "entries": result.entries, "patients": result.patients, "recipient": result.recipient,
        "output": str(out)})
    return result
