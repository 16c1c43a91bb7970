"""CSV import: encodings, separators, header aliases, bad lines, all-or-nothing, withdrawn patients."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from consent_fixtures import (  # noqa: F401
    TODAY,
    event_details,
    ledger_fixture,
    signing_key_fixture,
    withdrawer_fixture,
)

from sfr_gateway.consent import registry as lib
from sfr_gateway.consent.csvimport import parse_date, status_word
from sfr_gateway.errors import ConsentError
from sfr_gateway.ledger import Ledger

GOOD = [
    ["patient_id", "issuer", "status", "date", "source", "reference"],
    ["P001", "CHU", "consented", "2026-03-01", "formulaire", "Fiche n°12 — Hélène, été"],
    ["P002", "CHU", "informed", "02/03/2026", "dossier patient", "Notice remise à l'accueil"],
    ["P003", "CHU", "refus", "03.03.2026", "courrier", "Opposition reçue"],
]


def write_csv(path: Path, rows: list[list[str]], sep: str = ";", encoding: str = "utf-8") -> Path:
    """Write rows the way a spreadsheet exports them (quoting fields that hold the separator)."""
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=sep, lineterminator="\r\n").writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_import_each_encoding_and_separator(ledger: Ledger, tmp_path: Path, encoding: str, sep: str) -> None:
    path = write_csv(tmp_path / "c.csv", GOOD, sep, encoding)
    report = lib.import_csv(ledger, path, today=TODAY)
    assert report.encoding == encoding
    assert report.delimiter == sep
    assert (report.lines, report.valid, report.recorded, report.rejected) == (3, 3, 3, [])
    assert report.committed
    assert lib.current_status(ledger, "P001", "CHU") == "consented"
    assert lib.current_status(ledger, "P002", "CHU") == "informed"
    assert lib.current_status(ledger, "P003", "CHU") == "refused"
    (rec,) = lib.history(ledger, "P001", "CHU")
    assert (rec.source, rec.reference, rec.effective) == ("formulaire", "Fiche n°12 — Hélène, été", "2026-03-01")
    assert lib.history(ledger, "P002", "CHU")[0].reference == "Notice remise à l'accueil"
    assert lib.history(ledger, "P002", "CHU")[0].effective == "2026-03-02"


def test_latin1_bytes_undefined_in_cp1252_fall_back_to_latin1(ledger: Ledger, tmp_path: Path) -> None:
    rows = [["patient_id", "status", "date", "reference"], ["P1", "consented", "2026-01-01", "x\x81y"]]
    report = lib.import_csv(ledger, write_csv(tmp_path / "c.csv", rows, encoding="latin-1"), today=TODAY)
    assert report.encoding == "latin-1" and report.recorded == 1


def test_quoted_fields_with_separator_and_french_header(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes('IPP;Émetteur;Statut;Date d\'effet;Origine;Référence;Opérateur;Motif;Service\n'
                     'P1;CHU;Consentement;01/02/2026 10:32;formulaire;"Réf; A";"Dr Noël";"";Radiologie\n'
                     .encode("cp1252"))
    report = lib.import_csv(ledger, path, today=TODAY)
    assert report.rejected == [] and report.recorded == 1
    assert report.ignored_columns == ["Service"]
    (rec,) = lib.history(ledger, "P1", "CHU")
    assert (rec.status, rec.effective, rec.reference, rec.operator) == ("consented", "2026-02-01", "Réf; A", "Dr Noël")


def test_bad_lines_are_reported_with_number_and_reason_and_valid_ones_applied(ledger: Ledger, tmp_path: Path) -> None:
    rows = [
        ["patient_id", "issuer", "status", "date", "source", "reference"],  # line 1
        ["P001", "CHU", "consented", "2026-03-01", "", ""],                 # 2 ok
        ["", "CHU", "consented", "2026-03-01", "", ""],                     # 3 empty id
        ["P004", "CHU", "peut-être", "2026-03-01", "", ""],                 # 4 unknown status
        ["P005", "CHU", "consented", "2026-13-45", "", ""],                 # 5 unparsable date
        ["P006", "CHU", "consented", "2027-01-01", "", ""],                 # 6 future date
        ["P007", "CHU", "consented", "2026-03-01"],                         # 7 too few fields
        ["P008", "CHU", "consented", "2026-03-01", "", ""],                 # 8 conflict with 10
        ["P009", "CHU", "", "2026-03-01", "", ""],                          # 9 empty status
        ["P008", "CHU", "refused", "2026-03-02", "", ""],                   # 10 conflict with 8
        ["P001", "CHU", "consented", "2026-03-01", "", ""],                 # 11 identical duplicate of 2
        ["P012", "CHU", "oui", "2026-03-01", "", ""],                       # 12 ambiguous word refused
        ["P013", "CHU", "consented", "", "", ""],                           # 13 empty date
        ["P014", "CHU", "consented", "01/03/26", "", ""],                   # 14 two-digit year
        ["", "", "", "", "", ""],                                           # 15 blank: ignored
        ["P016", "CHU", "Opposition", "2026-03-01", "", ""],                # 16 ok (refused)
    ]
    report = lib.import_csv(ledger, write_csv(tmp_path / "bad.csv", rows), today=TODAY)
    rejected = dict(report.rejected)
    assert sorted(rejected) == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14]
    assert rejected[3] == "empty patient ID"
    assert "unknown status word" in rejected[4] and "unknown status word" in rejected[12]
    assert "unparsable date" in rejected[5] and "unparsable date" in rejected[14]
    assert rejected[6] == "date in the future"
    assert rejected[7] == "expected 6 fields, found 4"
    assert rejected[8] == "conflicting statuses for the same patient (lines 10)"
    assert rejected[10] == "conflicting statuses for the same patient (lines 8)"
    assert rejected[9] == "empty status" and rejected[13] == "empty date"
    assert report.duplicates == [11]
    assert report.recorded == 2 and report.committed
    assert lib.current_status(ledger, "P001", "CHU") == "consented"
    assert lib.current_status(ledger, "P016", "CHU") == "refused"
    for pid in ("P004", "P005", "P006", "P007", "P008", "P012", "P013", "P014"):
        assert lib.current_status(ledger, pid, "CHU") == "unknown"
    # reasons never echo the values of the line
    assert not any("P0" in reason or "peut" in reason for _, reason in report.rejected)
    assert "P001" not in event_details(ledger)


def test_history_mode_applies_a_patients_lines_in_date_order(ledger: Ledger, tmp_path: Path) -> None:
    rows = [
        ["patient_id", "status", "date"],
        ["P1", "consented", "2026-03-01"],   # 2
        ["P1", "informed", "2026-01-01"],    # 3
        ["P2", "consented", "2026-02-01"],   # 4 conflicts with 5 (same date)
        ["P2", "refused", "2026-02-01"],     # 5
        ["P3", "refused", "2026-02-01"],     # 6
        ["P3", "consented", "2026-01-01"],   # 7 older: recorded, does not override
    ]
    path = write_csv(tmp_path / "h.csv", rows)
    strict = lib.import_csv(ledger, path, today=TODAY, all_or_nothing=True)
    assert [n for n, _ in strict.rejected] == [2, 3, 4, 5, 6, 7] and not strict.committed
    report = lib.import_csv(ledger, path, today=TODAY, history=True)
    assert dict(report.rejected) == {4: "conflicting statuses for the same patient on the same date (lines 5)",
                                     5: "conflicting statuses for the same patient on the same date (lines 4)"}
    assert report.recorded == 4
    assert [r.status for r in lib.history(ledger, "P1")] == ["informed", "consented"]
    assert lib.current_status(ledger, "P1") == "consented"
    assert lib.current_status(ledger, "P2") == "unknown"
    assert lib.current_status(ledger, "P3") == "refused"


def test_all_or_nothing_applies_nothing_when_a_line_is_bad(ledger: Ledger, tmp_path: Path) -> None:
    rows = [*GOOD, ["P004", "CHU", "maybe", "2026-03-01", "", ""]]
    report = lib.import_csv(ledger, write_csv(tmp_path / "c.csv", rows), today=TODAY, all_or_nothing=True)
    assert not report.committed and report.recorded == 0
    assert report.rejected == [(5, report.rejected[0][1])]
    assert ledger.conn.execute("SELECT COUNT(*) FROM consent_records").fetchone()[0] == 0
    good = lib.import_csv(ledger, write_csv(tmp_path / "g.csv", GOOD), today=TODAY, all_or_nothing=True)
    assert good.committed and good.recorded == 3


def test_reimport_is_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", GOOD)
    lib.import_csv(ledger, path, today=TODAY)
    again = lib.import_csv(ledger, path, today=TODAY)
    assert (again.recorded, again.unchanged) == (0, 3)
    assert ledger.conn.execute("SELECT COUNT(*) FROM consent_records").fetchone()[0] == 3


def test_reimport_cannot_resurrect_a_withdrawn_patient(ledger: Ledger, tmp_path: Path,
                                                        withdrawer: lib.Withdrawer) -> None:
    path = write_csv(tmp_path / "c.csv", GOOD)
    lib.import_csv(ledger, path, today=TODAY)
    lib.withdraw(ledger, "P001", withdrawer, issuer="CHU", today=TODAY)
    later = write_csv(tmp_path / "later.csv", [GOOD[0], ["P001", "CHU", "consented", "2026-06-14", "", ""]])
    for csv_path in (path, later):
        report = lib.import_csv(ledger, csv_path, today=TODAY, withdrawer=withdrawer, all_or_nothing=True)
        assert report.skipped_withdrawn == [2] and report.committed
        assert lib.current_status(ledger, "P001", "CHU") == "withdrawn"
    assert len(lib.withdrawal_requests(ledger)) == 1


def test_import_can_withdraw_and_queues_one_request(ledger: Ledger, tmp_path: Path,
                                                    withdrawer: lib.Withdrawer) -> None:
    rows = [GOOD[0], ["P001", "CHU", "retrait", "2026-03-01", "courrier", ""]]
    path = write_csv(tmp_path / "w.csv", rows)
    with pytest.raises(ConsentError, match="pseudonym"):
        lib.import_csv(ledger, path, today=TODAY)  # no withdrawer: refused, nothing applied
    assert lib.current_status(ledger, "P001", "CHU") == "unknown"
    report = lib.import_csv(ledger, path, today=TODAY, withdrawer=withdrawer)
    assert (report.withdrawals, report.requests_queued) == (1, 1)
    again = lib.import_csv(ledger, path, today=TODAY, withdrawer=withdrawer)
    assert again.skipped_withdrawn == [2] and again.requests_queued == 0
    assert len(lib.withdrawal_requests(ledger)) == 1


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
    (b"just some text without separators\nsecond line\n", "no ';', ',' or tab"),
    (b"name;age\nfoo;12\n", "missing column"),
    (b"patient_id;ipp;status;date\n1;2;consented;2026-01-01\n", "two columns mean patient_id"),
])
def test_not_a_consent_csv_is_refused_whole(ledger: Ledger, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(ConsentError, match=message):
        lib.import_csv(ledger, path, today=TODAY)
    assert ledger.conn.execute("SELECT COUNT(*) FROM consent_records").fetchone()[0] == 0


def test_excel_sep_line_and_line_numbers(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"sep=,\r\nN\xb0 patient,status,date\r\nP1,consented,2026-01-01\r\nP2,maybe,2026-01-01\r\n")
    report = lib.import_csv(ledger, path, today=TODAY)
    assert report.delimiter == "," and report.encoding == "cp1252"
    assert report.recorded == 1 and [n for n, _ in report.rejected] == [4]


def test_utf16_excel_unicode_text(ledger: Ledger, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u.csv", GOOD, "\t", "utf-16")
    assert lib.import_csv(ledger, path, today=TODAY).recorded == 3


@pytest.mark.parametrize(("word", "status"), [
    ("Consentement", "consented"), ("CONSENTED", "consented"), ("Refus", "refused"),
    ("opposition", "refused"), ("Opposée", "refused"), ("Informé", "informed"), ("non-opposition", "informed"),
    ("Retrait du consentement", "withdrawn"), ("withdrawn", "withdrawn"), ("inconnu", "unknown"),
    ("oui", None), ("non", None), ("yes", None), ("", None),
])
def test_status_words(word: str, status: str | None) -> None:
    assert status_word(word) == status


@pytest.mark.parametrize(("text", "date"), [
    ("2026-03-01", dt.date(2026, 3, 1)), ("01/03/2026", dt.date(2026, 3, 1)), ("1/3/2026", dt.date(2026, 3, 1)),
    ("01-03-2026", dt.date(2026, 3, 1)), ("01.03.2026", dt.date(2026, 3, 1)),
    ("2026-03-01T08:00:00", dt.date(2026, 3, 1)), ("01/03/2026 08:00", dt.date(2026, 3, 1)),
])
def test_dates(text: str, date: dt.date) -> None:
    assert parse_date(text) == date


@pytest.mark.parametrize("text", ["", "2026-02-30", "03/01/26", "tomorrow", "2026", "0026-03-01"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)
