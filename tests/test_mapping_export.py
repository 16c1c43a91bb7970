"""mapping export: encrypted to the DPO's age key only; Debian age and pyrage decrypt it."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest
from mapping_fixtures import age_identity, pipeline_record, require_binary, run

from sfr_gateway.home.config import HomePaths
from sfr_gateway.ledger import open_ledger
from sfr_gateway.mapping.export import CSV_COLUMNS
from sfr_gateway.sample import SampleExport


@pytest.fixture
def exported(home: Path, export_copy: Path, tmp_path: Path, cli):
    facts = pipeline_record(home, export_copy)
    key, recipient = age_identity(tmp_path)
    out = tmp_path / "dpo" / "mapping.csv.age"
    r = cli("--home", home, "mapping", "export", "--recipient", recipient, "--output", out)
    assert r.exit_code == 0, r.stderr
    return facts, key, recipient, out


def _expected_csv(facts: dict[str, tuple], sample: SampleExport, secret_fp: str) -> str:
    rows = []
    for study_uid, (pseudonym, new_uid, new_acc, offset) in facts.items():
        p = next(p for p in sample.patients if study_uid in p.study_uids)
        acc = p.accession_numbers[p.study_uids.index(study_uid)]
        rows.append([pseudonym, p.patient_id, p.issuer, acc, new_acc, study_uid, new_uid, str(offset), secret_fp, "yes"])
    rows.sort(key=lambda r: (r[0], r[5]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def test_export_decrypts_with_debian_age_to_the_expected_csv(home: Path, exported, sample_export: SampleExport,
                                                             cli) -> None:
    age_bin = require_binary("age")
    facts, key, _, out = exported
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = out.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    for p in sample_export.patients:
        assert p.patient_id.encode() not in data
    done = run([age_bin, "-d", "-i", str(key), str(out)])
    assert done.returncode == 0, done.stderr
    fp = cli("--home", home, "keys", "show", "--json")
    secret_fp = json.loads(fp.stdout)["pseudonym_secret_fingerprint"]
    assert done.stdout.decode("utf-8") == _expected_csv(facts, sample_export, secret_fp)


def test_export_decrypts_with_pyrage_and_wrong_key_fails(exported, tmp_path: Path) -> None:
    pyrage = pytest.importorskip("pyrage")
    facts, key, _, out = exported
    ident = pyrage.x25519.Identity.from_str(key.read_text().splitlines()[-1])
    text = pyrage.decrypt(out.read_bytes(), [ident]).decode("utf-8")
    assert len(text.splitlines()) == 1 + len(facts)
    other = pyrage.x25519.Identity.generate()
    with pytest.raises(Exception):  # noqa: B017 - pyrage raises its own DecryptError
        pyrage.decrypt(out.read_bytes(), [other])


def test_export_json_and_event(home: Path, export_copy: Path, tmp_path: Path, cli) -> None:
    from sfr_gateway.crypto.age import decrypt_bytes, parse_identities

    facts = pipeline_record(home, export_copy)
    key, recipient = age_identity(tmp_path)
    out = tmp_path / "m.json.age"
    r = cli("--home", home, "mapping", "export", "--recipient", recipient, "--format", "json", "-o", out)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(decrypt_bytes(out.read_bytes(), parse_identities(key.read_text())))
    assert doc["format"] == "sfr-gateway-mapping/1" and doc["site"] == "TEST01"
    assert {e["study_uid"] for e in doc["entries"]} == set(facts)
    with open_ledger(HomePaths(home).state_db) as ledger:
        [event] = [e for e in ledger.events(20) if e["command"] == "mapping export"]
    assert event["detail"]["entries"] == len(facts) and event["detail"]["recipient"] == recipient


def test_export_refuses_a_bad_recipient_and_writes_nothing(home: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "x.age"
    r = cli("--home", home, "mapping", "export", "--recipient", "age1notakey", "-o", out)
    assert r.exit_code == 4 and not out.exists()
