"""The ``consent`` commands and the consent section of ``scan``, through the real entry point."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from consent_fixtures import add_studies

from sfr_gateway.consent import registry as lib
from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.home.config import load_config
from sfr_gateway.ledger import open_ledger


def ok_json(result) -> dict | list:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_set_show_list_coverage(home: Path, cli) -> None:
    ok_json(cli("--home", home, "consent", "set", "P1", "informed", "--issuer", "CHU", "--date", "01/02/2026",
                "--source", "form", "--reference", "F-12", "--operator", "Dr Noël", "--json"))
    out = ok_json(cli("--home", home, "consent", "set", "P1", "consented", "--issuer", "CHU", "--json"))
    assert out == {"outcome": "recorded", "status": "consented", "request_queued": False, "batches_cancelled": 0,
                   "requests_queued": 0, "already_released": {"studies": 0, "batches": []},
                   "applies_to": {"outcome": "no-match-yet", "unresolved": True,  # nothing scanned yet
                                  "identities": [{"patient_id": "P1", "issuer": "CHU"}]}}
    shown = ok_json(cli("--home", home, "consent", "show", "P1", "--issuer", "CHU", "--json"))
    assert shown["status"] == "consented" and shown["releasable"] is True
    assert [h["status"] for h in shown["history"]] == ["informed", "consented"]
    assert shown["history"][0]["operator"] == "Dr Noël" and shown["history"][0]["effective"] == "2026-02-01"
    assert shown["history"][1]["effective"] == dt.date.today().isoformat()
    listed = ok_json(cli("--home", home, "consent", "list", "--status", "consented", "--json"))
    assert [(p["patient_id"], p["issuer"], p["records"]) for p in listed] == [("P1", "CHU", 2)]
    assert ok_json(cli("--home", home, "consent", "list", "--status", "refused", "--json")) == []
    cov = ok_json(cli("--home", home, "consent", "coverage", "--json"))
    assert cov["summary"] == "0 of 0 eligible studies (0%) releasable"
    human = cli("--home", home, "consent", "show", "P1", "--issuer", "CHU")
    assert human.exit_code == 0 and "consented (releasable under explicit)" in human.stdout


def test_bad_input_exit_codes(home: Path, cli) -> None:
    assert cli("--home", home, "consent", "set", "P1", "maybe").exit_code == 2
    future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    res = cli("--home", home, "consent", "set", "P1", "consented", "--date", future)
    assert res.exit_code == 9 and "future" in res.stderr
    res = cli("--home", home, "consent", "set", " ", "consented")
    assert res.exit_code == 9 and "empty patient ID" in res.stderr
    res = cli("--home", home, "consent", "import", home / "missing.csv")
    assert res.exit_code == 8


def test_import_reports_rejections_and_exits_9(home: Path, cli, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("patient_id;status;date\nP1;consentement;2026-01-02\nP2;bof;2026-01-02\n".encode("cp1252"))
    res = cli("--home", home, "consent", "import", path, "--all-or-nothing", "--json")
    assert res.exit_code == 9 and "nothing applied" in res.stderr
    report = json.loads(res.stdout)
    assert report["committed"] is False and report["rejected"][0]["line"] == 3
    assert "P2" not in res.stdout and "bof" not in res.stdout
    res = cli("--home", home, "consent", "import", path)
    assert res.exit_code == 9 and "line 3: unknown status word" in res.stdout and "valid lines applied" in res.stderr
    shown = ok_json(cli("--home", home, "consent", "show", "P1", "--json"))
    assert shown["status"] == "consented"


def test_scan_reports_consent_coverage(home: Path, cli, sample_export) -> None:
    data = ok_json(cli("--home", home, "scan", sample_export.root, "--json"))
    eligible = data["eligible"]["studies"]
    assert eligible > 0
    assert data["consent"]["summary"] == f"0 of {eligible} eligible studies (0%) releasable"
    assert data["consent"]["waiting_studies"] == {"unknown": eligible}
    with open_ledger(load_config(home).home.state_db) as ledger:
        mine = ledger.conn.execute(
            "SELECT patient_id, issuer, COUNT(DISTINCT study_uid) FROM instances WHERE eligible = 1 "
            "GROUP BY patient_id, issuer ORDER BY patient_id LIMIT 1").fetchone()
    ok_json(cli("--home", home, "consent", "set", mine[0], "consented", "--issuer", mine[1], "--json"))
    data = ok_json(cli("--home", home, "scan", sample_export.root, "--json"))
    assert data["consent"]["releasable_studies"] == mine[2]
    for patient in sample_export.patients:
        assert patient.patient_id not in json.dumps(data["consent"])
    human = cli("--home", home, "scan", sample_export.root)
    assert f"{mine[2]} of {eligible} eligible studies" in human.stdout


def test_withdraw_command_queues_one_request(home: Path, cli) -> None:
    ok_json(cli("--home", home, "consent", "set", "P1", "consented", "--json"))
    out = ok_json(cli("--home", home, "consent", "withdraw", "P1", "--reason", "lettre", "--json"))
    assert out["outcome"] == "withdrawn" and out["request_queued"] is True
    again = ok_json(cli("--home", home, "consent", "withdraw", "P1", "--json"))
    assert again["outcome"] == "already-withdrawn"
    res = cli("--home", home, "consent", "set", "P1", "consented")
    assert res.exit_code == 9 and "permanent" in res.stderr
    config = load_config(home)
    with open_ledger(config.home.state_db) as ledger:
        (request,) = lib.withdrawal_requests(ledger)
    assert request.pseudonym.startswith("TEST01-") and '"P1"' not in request.payload
    payload = lib.verify_withdrawal_request(request, PublicKey.load(config.home.signing_pub))
    assert payload["pseudonym"] == request.pseudonym and payload["site"] == "TEST01"


def test_issuer_mismatch_is_pointed_out(home: Path, cli, tmp_path: Path) -> None:
    with open_ledger(load_config(home).home.state_db) as ledger:
        add_studies(ledger, [("P7", "CHU-A", "7.1")])
    res = cli("--home", home, "consent", "set", "P7", "consented", "--issuer", "CHU-B")
    assert res.exit_code == 0 and "NOT APPLIED" in res.stderr and "issuer 'CHU-A'" in res.stderr
    cov = ok_json(cli("--home", home, "consent", "coverage", "--json"))
    assert cov["issuer_mismatches"] == 1 and cov["releasable_studies"] == 0
    res = cli("--home", home, "consent", "set", "P7", "consented", "--issuer", "CHU-A")
    assert res.exit_code == 0 and "NOT APPLIED" not in res.stderr and "applies to issuer 'CHU-A'" in res.stdout
    cov = ok_json(cli("--home", home, "consent", "coverage", "--json"))
    assert cov["issuer_mismatches"] == 0 and cov["releasable_studies"] == 1


def test_consent_without_issuer_resolves_to_the_one_issuer_of_the_index(home: Path, cli) -> None:
    """Before issue 14 this consent matched nothing: coverage said 0 mismatches, the study waited."""
    with open_ledger(load_config(home).home.state_db) as ledger:
        add_studies(ledger, [("P7", "CHU-A", "7.1")])
    res = cli("--home", home, "consent", "set", "P7", "consented")
    assert res.exit_code == 0 and "applies to issuer 'CHU-A'" in res.stdout and res.stderr == ""
    cov = ok_json(cli("--home", home, "consent", "coverage", "--json"))
    assert cov["releasable_studies"] == 1 and cov["unresolved_records"] == {}
    shown = ok_json(cli("--home", home, "consent", "show", "P7", "--json"))
    assert shown["releasable"] is True
    assert [(i["issuer"], i["status"], i["eligible_studies"]) for i in shown["identities"]] == [("CHU-A", "consented", 1)]
    assert shown["history"][0]["applies_to"]["identities"] == [{"patient_id": "P7", "issuer": "CHU-A"}]


def test_import_with_a_withdrawal_line_queues_a_signed_request(home: Path, cli, tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("patient_id;status;date\nP1;consentement;2026-01-02\nP2;retrait;2026-01-03\n", encoding="utf-8")
    report = ok_json(cli("--home", home, "consent", "import", path, "--json"))
    assert (report["recorded"], report["withdrawals"], report["requests_queued"]) == (2, 1, 1)
    config = load_config(home)
    with open_ledger(config.home.state_db) as ledger:
        (request,) = lib.withdrawal_requests(ledger)
    lib.verify_withdrawal_request(request, PublicKey.load(config.home.signing_pub))
