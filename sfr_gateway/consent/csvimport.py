"""Import consent records from a spreadsheet CSV export.

Columns (header required, any order, names case- and accent-insensitive, French aliases accepted):

==========  ==========================================  ========================================
column      aliases                                      content
==========  ==========================================  ========================================
patient_id  patient, ipp, nip, id_patient, identifiant   local patient ID (required)
issuer      issuer_of_patient_id, emetteur, domaine      IssuerOfPatientID ('' when unused)
status      statut, etat, consentement                   status word (required), see STATUS_WORDS
date        date_effet, date_statut, date_consentement   effective date (required): YYYY-MM-DD,
                                                         DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY
                                                         (a time after the date is ignored)
source      origine                                      form, ehr-export... (default csv-import)
reference   ref, document, reference_document            document reference
operator    operateur, saisi_par                         who recorded it (default: the importer)
reason      motif, raison, commentaire                   free text
==========  ==========================================  ========================================

Encodings: UTF-8, UTF-8 with BOM, UTF-16 with BOM, else Windows-1252 (Latin-1 for the bytes
Windows-1252 leaves undefined). Separator: ``;``, ``,`` or tab, taken from the header line, or
from Excel's ``sep=;`` first line when present.

Every rejected line is reported with its line number and a reason (never its values). Lines of
one patient with different statuses in the same file are all rejected (which one holds cannot be
told), unless ``history`` is set: then only lines of one patient on the same date with different
statuses conflict, and the rest is applied in date order. Valid lines are applied in one transaction;
with ``all_or_nothing`` any rejection applies
none. Lines for a withdrawn patient are skipped and reported: a withdrawal is permanent.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConsentError, InputError
from ..home.faults import checkpoint
from ..ledger import Ledger
from ..ledger.consent import site_issuers
from ..ledger.db import insert_event
from .identity import Registry
from .policy import STATUSES, check_patient_id
from .record import apply_record
from .withdrawal import Withdrawer

MAX_BYTES = 64 * 1024 * 1024

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "patient_id": ("patientid", "patient", "ipp", "nip", "idpatient", "identifiant", "identifiantpatient",
                   "numeropatient", "nopatient", "npatient", "numpatient"),
    "issuer": ("issuer", "issuerofpatientid", "emetteur", "domaine", "autorite"),
    "status": ("status", "statut", "etat", "consent", "consentement"),
    "date": ("date", "effective", "effectivedate", "dateeffet", "datestatut", "dateconsentement",
             "dateinformation", "datedeffet"),
    "source": ("source", "origine"),
    "reference": ("reference", "ref", "document", "referencedocument", "documentreference"),
    "operator": ("operator", "operateur", "saisipar", "agent"),
    "reason": ("reason", "motif", "raison", "commentaire", "comment"),
}
REQUIRED = ("patient_id", "status", "date")

#: Accepted status words (compared without case, accents, spaces, '-' or '_').
#: yes/no/oui/non are refused on purpose: "non" under an "opposition" column would mean the opposite.
STATUS_WORDS: dict[str, str] = {
    **{w: "unknown" for w in ("unknown", "inconnu", "nonrenseigne", "inconnue")},
    **{w: "informed" for w in ("informed", "informe", "informee", "information", "notice", "nonopposition",
                               "informationdelivree", "noticeremise")},
    **{w: "consented" for w in ("consented", "consent", "consentement", "consenti", "consentie", "accord",
                                "accepte", "acceptee")},
    **{w: "refused" for w in ("refused", "refusal", "refus", "refuse", "refusee", "opposition", "oppose",
                              "opposee")},
    **{w: "withdrawn" for w in ("withdrawn", "withdrawal", "retrait", "retire", "retiree",
                                "retraitduconsentement", "retraitconsentement")},
}


def _fold(text: str) -> str:
    """Lower case, no accents, letters and digits only."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]", "", text.lower())


@functools.lru_cache(maxsize=256)
def status_word(word: str) -> str | None:
    """The status a word means, or None."""
    return STATUS_WORDS.get(_fold(word))


_ISO_DATE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")
_FRENCH_DATE = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})")


def parse_date(text: str) -> dt.date:
    """Parse an effective date: YYYY-MM-DD, YYYY/MM/DD, DD/MM/YYYY, DD-MM-YYYY or DD.MM.YYYY (four-digit
    year from 1900); a time part after a space or 'T' is ignored. ValueError if none fits."""
    text = text.strip().split(" ")[0].split("T")[0]
    if m := _ISO_DATE.fullmatch(text):
        year, month, day = int(m.group(1)), int(m.group(3)), int(m.group(4))
    elif m := _FRENCH_DATE.fullmatch(text):
        year, month, day = int(m.group(4)), int(m.group(3)), int(m.group(1))
    else:
        raise ValueError("unparsable date")
    if year < 1900:
        raise ValueError("unparsable date")
    return dt.date(year, month, day)  # ValueError for 2026-02-30


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name): BOMs first, then strict UTF-8, then Windows-1252 / Latin-1."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(name), name
            except UnicodeDecodeError:
                raise ConsentError(f"not a CSV text file: invalid {name} text") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


@dataclass(frozen=True)
class Line:
    """One valid data line (local data)."""

    number: int
    patient_id: str
    issuer: str
    status: str
    effective: str
    source: str
    reference: str
    operator: str
    reason: str


@dataclass
class ImportReport:
    """What an import read and did. Holds line numbers, counts and reasons: no patient values."""

    file: str
    encoding: str = ""
    delimiter: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    lines: int = 0
    valid: int = 0
    recorded: int = 0
    unchanged: int = 0
    withdrawals: int = 0
    requests_queued: int = 0
    batches_cancelled: int = 0
    duplicates: list[int] = field(default_factory=list)
    skipped_withdrawn: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    not_applied: list[tuple[int, str]] = field(default_factory=list)
    already_released: list[tuple[int, str]] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    committed: bool = False
    all_or_nothing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "encoding": self.encoding, "delimiter": self.delimiter,
            "columns": self.columns, "ignored_columns": self.ignored_columns, "lines": self.lines,
            "valid": self.valid, "recorded": self.recorded, "unchanged": self.unchanged,
            "withdrawals": self.withdrawals, "requests_queued": self.requests_queued,
            "batches_cancelled": self.batches_cancelled, "duplicate_lines": self.duplicates,
            "skipped_withdrawn_lines": self.skipped_withdrawn,
            "rejected": [{"line": n, "reason": r} for n, r in self.rejected],
            "not_applied": [{"line": n, "reason": r} for n, r in self.not_applied],
            "already_released": [{"line": n, "detail": r} for n, r in self.already_released],
            "by_status": self.by_status, "committed": self.committed, "all_or_nothing": self.all_or_nothing,
        }


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        raise ConsentError("not a CSV: the header line has no ';', ',' or tab separator")
    return best


def _map_header(names: list[str], report: ImportReport) -> dict[str, int]:
    lookup = {alias: col for col, aliases in COLUMN_ALIASES.items() for alias in (*aliases, _fold(col))}
    found: dict[str, int] = {}
    for index, name in enumerate(names):
        col = lookup.get(_fold(name))
        if col is None:
            if name.strip():
                report.ignored_columns.append(name.strip()[:40])
            continue
        if col in found:
            raise ConsentError(f"header: two columns mean {col} (columns {found[col] + 1} and {index + 1})")
        found[col] = index
        report.columns[col] = name.strip()
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise ConsentError(
            f"header: missing column(s) {', '.join(missing)}; expected patient_id;issuer;status;date;source;"
            "reference (issuer, source, reference, operator, reason optional)")
    return found


def parse(
    data: bytes, name: str, today: dt.date, operator: str = "", history: bool = False
) -> tuple[ImportReport, list[Line]]:
    """Decode and validate a CSV; returns the report (rejections filled in) and the valid lines.

    Lines of one patient with different statuses conflict (all are rejected); with ``history``,
    only those on the same date conflict, and the others are a history applied in date order.
    """
    report = ImportReport(file=name)
    if not data.strip():
        raise ConsentError("the CSV file is empty")
    text, report.encoding = decode(data)
    if "\x00" in text:
        raise ConsentError("not a CSV text file (binary content)")
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    skipped = 0
    excel_sep = re.fullmatch(r"\s*sep=(.)\s*", first)
    if excel_sep:  # Excel's "sep=;" first line names the separator
        report.delimiter = excel_sep.group(1)
        text = text.split("\n", 1)[1] if "\n" in text else ""
        skipped = 1
    else:
        report.delimiter = _sniff_delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=report.delimiter)
    try:
        header = next(reader)
    except csv.Error:
        raise ConsentError("not a CSV: the header line cannot be read") from None
    cols = _map_header(header, report)
    default_source = f"csv-import:{name}"
    lines: list[Line] = []
    seen_exact: dict[tuple[str, ...], int] = {}
    start = reader.line_num + 1 + skipped
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            report.lines += 1
            report.rejected.append((start, "malformed CSV line (unbalanced quotes?)"))
            start = reader.line_num + 1 + skipped
            continue
        number, start = start, reader.line_num + 1 + skipped
        if not any(cell.strip() for cell in row):
            continue
        report.lines += 1
        if len(row) > len(header) and not any(c.strip() for c in row[len(header):]):
            row = row[:len(header)]
        if len(row) != len(header):
            report.rejected.append((number, f"expected {len(header)} fields, found {len(row)}"))
            continue

        def cell(col: str, row: list[str] = row) -> str:
            return row[cols[col]].strip() if col in cols else ""

        try:
            patient_id = check_patient_id(cell("patient_id"))
            issuer = check_patient_id(cell("issuer"), "issuer")
        except ConsentError as exc:
            report.rejected.append((number, str(exc)))
            continue
        if not cell("status"):
            report.rejected.append((number, "empty status"))
            continue
        status = status_word(cell("status"))
        if status is None:
            hint = f"unknown status word; use one of {', '.join(STATUSES)} (or a documented French synonym)"
            report.rejected.append((number, hint))
            continue
        if not cell("date"):
            report.rejected.append((number, "empty date"))
            continue
        try:
            effective = parse_date(cell("date"))
        except ValueError:
            report.rejected.append((number, "unparsable date; use YYYY-MM-DD or DD/MM/YYYY"))
            continue
        if effective > today:
            report.rejected.append((number, "date in the future"))
            continue
        line = Line(number, patient_id, issuer, status, effective.isoformat(), cell("source") or default_source,
                    cell("reference"), cell("operator") or operator, cell("reason"))
        key = (patient_id, issuer, status, line.effective, line.source, line.reference, line.operator, line.reason)
        if key in seen_exact:
            report.duplicates.append(number)
            continue
        seen_exact[key] = number
        lines.append(line)
    by_patient: dict[tuple[str, ...], list[Line]] = defaultdict(list)
    for line in lines:
        group_key = (line.patient_id, line.issuer, line.effective if history else "")
        by_patient[group_key].append(line)
    conflicting: set[int] = set()
    for group in by_patient.values():
        if len({ln.status for ln in group}) > 1:
            numbers = sorted(ln.number for ln in group)
            same = " on the same date" if history else ""
            for ln in group:
                others = ", ".join(str(n) for n in numbers if n != ln.number)
                report.rejected.append((ln.number, f"conflicting statuses for the same patient{same} (lines {others})"))
                conflicting.add(ln.number)
    lines = [ln for ln in lines if ln.number not in conflicting]
    if history:
        lines.sort(key=lambda ln: (ln.effective, ln.number))
    report.rejected.sort()
    report.valid = len(lines)
    return report, lines


def import_file(
    ledger: Ledger,
    path: Path | str,
    *,
    today: dt.date,
    all_or_nothing: bool = False,
    withdrawer: Withdrawer | None = None,
    operator: str = "",
    history: bool = False,
    issuers: Sequence[str] = (),
) -> ImportReport:
    """Parse ``path`` and apply its valid lines in one transaction (none if ``all_or_nothing``
    and any line was rejected). The event records counts only.

    Each applied line's record is resolved like any other (``consent.identity``, with the
    site's declared ``issuers``): a line that applies to no scanned identity (no issuer and
    ambiguous, or nothing scanned yet) is listed in ``not_applied`` with the reason; a refusal
    or withdrawal of a patient whose data already left, in ``already_released``.

    ``history``: a patient may have several lines with different dates (applied in date order);
    by default any two lines of one patient with different statuses are rejected."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConsentError(f"{path.name}: larger than {MAX_BYTES // 2**20} MiB; split it")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read consent file {path}: {exc.strerror}") from None
    report, lines = parse(data, path.name, today, operator, history)
    report.all_or_nothing = all_or_nothing
    if withdrawer is None and any(ln.status == "withdrawn" for ln in lines):
        raise ConsentError("the file withdraws patients: importing it needs the pseudonym secret and signing key")
    if all_or_nothing and report.rejected:
        with ledger.transaction() as conn:
            insert_event(conn, "consent", "import", "rejected", _event(report))
        return report
    by_status: dict[str, int] = defaultdict(int)
    with ledger.transaction() as conn:
        registry = Registry.load(conn, issuers, site_issuers=site_issuers(conn))  # once: kept current by apply_record
        for ln in lines:
            change = apply_record(conn, ln.patient_id, ln.issuer, ln.status, ln.effective, ln.source, ln.reference,
                            ln.operator, ln.reason, withdrawer, issuers, registry)
            checkpoint("mid-consent-import")
            if change.resolution is not None and change.resolution.unresolved and change.outcome != "already-withdrawn":
                report.not_applied.append((ln.number, change.resolution.describe()))
            if change.released_batches:
                report.already_released.append((ln.number, f"{ln.status} after release: {change.released_studies} "
                                                f"study(ies) already left in batch(es) "
                                                f"{', '.join(change.released_batches)}; "
                                                f"{change.requests_queued} withdrawal request(s) queued"))
                report.requests_queued += change.requests_queued if change.outcome != "withdrawn" else 0
            if change.outcome == "already-withdrawn":
                report.skipped_withdrawn.append(ln.number)
            elif change.outcome == "unchanged":
                report.unchanged += 1
            else:
                report.recorded += 1
                by_status[ln.status] += 1
                if change.outcome == "withdrawn":
                    report.withdrawals += 1
                    report.requests_queued += change.requests_queued
                    report.batches_cancelled += change.batches_cancelled
        report.by_status = dict(sorted(by_status.items()))
        report.committed = True
        insert_event(conn, "consent", "import", "partial" if report.rejected else "ok", _event(report))
    return report


def _event(report: ImportReport) -> dict[str, Any]:
    return {
        "lines": report.lines, "valid": report.valid, "recorded": report.recorded, "unchanged": report.unchanged,
        "rejected": len(report.rejected), "duplicates": len(report.duplicates),
        "skipped_withdrawn": len(report.skipped_withdrawn), "withdrawals": report.withdrawals,
        "requests_queued": report.requests_queued, "by_status": report.by_status,
        "not_applied": len(report.not_applied), "already_released": len(report.already_released),
        "encoding": report.encoding, "committed": report.committed,
    }
