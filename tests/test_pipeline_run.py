"""The cron `run`: scan → gate → de-identify → package → encrypt → sign → upload, exactly once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pipeline_fixtures import Site, site  # noqa: F401

from sfr_gateway.errors import LockHeldError
from sfr_gateway.home.config import load_config
from sfr_gateway.home.lock import exclusive

ELIGIBLE = 84  # instances of the sample export that selection keeps (see test_foundation_scan)


def run_json(site: Site, *args: str) -> dict:
    proc = site.gateway("run", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_nothing_leaves_without_consent(site: Site) -> None:
    report = run_json(site)
    assert report["release"]["instances"] == 0
    assert report["consent"]["releasable_studies"] == 0
    assert site.batches() == []
    assert not list((site.home / "outbox").glob("*.age"))


def test_run_delivers_every_consented_instance_once_and_a_rerun_sends_nothing(site: Site, cli) -> None:
    site.consent_all(cli)
    first = run_json(site)
    assert first["release"]["instances"] == ELIGIBLE
    assert first["upload"]["acknowledged"] == first["release"]["batches"] == 7  # one batch per study
    datasets = site.open_all()
    assert len(datasets) == ELIGIBLE
    assert len({ds.SOPInstanceUID for ds in datasets}) == ELIGIBLE
    assert all(ds.PatientIdentityRemoved == "YES" for ds in datasets)
    assert not list(site.dropbox.glob("*.part")) and not list(site.dropbox.glob(".*"))
    before = {p.name: p.stat().st_mtime_ns for p in site.dropbox.iterdir()}
    again = run_json(site)
    assert again["release"]["instances"] == 0 and again["upload"]["acknowledged"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in site.dropbox.iterdir()} == before


def test_manifest_records_pseudonymised_consent(site: Site, cli) -> None:
    site.consent_all(cli)
    run_json(site)
    site.open_all()
    manifests = [json.loads(p.read_text()) for p in (site.central / "opened").glob("*/manifest.json")]
    assert len(manifests) == 7
    tokens = {t for p in site.export.patients for kind in p.tokens.values() for t in kind}
    for manifest in manifests:
        (patient,) = manifest["patients"]
        assert patient["consent_status"] == "consented" and manifest["consent_mode"] == "explicit"
        # no consent or information date: a real date beside shifted study dates gives the offset away
        assert "consent_date" not in patient
        assert not [d for d in ("2026-01-15", "20260115", "15/01/2026") if d in json.dumps(manifest)]
        assert patient["pseudonym"].startswith("TEST01-")
        text = json.dumps(manifest, ensure_ascii=False)
        assert not [t for t in tokens if t in text]


def test_only_consented_patients_are_released(site: Site, cli) -> None:
    chosen = site.export.patients[0]
    assert cli("--home", site.home, "consent", "set", chosen.patient_id, "consented", "--issuer", chosen.issuer,
               "--date", "2026-01-15").exit_code == 0
    refused = site.export.patients[1]
    assert cli("--home", site.home, "consent", "set", refused.patient_id, "refused", "--issuer",
               refused.issuer).exit_code == 0
    report = run_json(site)
    assert report["release"]["instances"] == 12  # patient 0: one chest study, two series of six
    names = {ds.PatientName for ds in site.open_all()}
    assert len(names) == 1


def test_withdrawal_after_release_stops_everything_and_reaches_the_central_host(site: Site, cli, tmp_path: Path) -> None:
    site.consent_all(cli)
    run_json(site)
    victim = site.export.patients[1]  # has a follow-up study
    result = cli("--home", site.home, "consent", "withdraw", victim.patient_id, "--issuer", victim.issuer,
                 "--reason", "courrier")
    assert result.exit_code == 0, result.stderr
    report = run_json(site)
    assert report["upload"]["withdrawals_sent"] == 1
    requests = sorted(site.dropbox.glob("withdrawal-*.json"))
    assert len(requests) == 1 and Path(str(requests[0]) + ".minisig").exists()
    payload = json.loads(requests[0].read_text())
    assert payload["pseudonym"].startswith("TEST01-")
    assert victim.patient_id not in requests[0].read_text()
    # re-importing an old consent cannot resurrect the patient, and a rerun sends nothing new
    csv = tmp_path / "old.csv"
    csv.write_text(f"patient_id;issuer;status;date\n{victim.patient_id};{victim.issuer};consented;2026-01-15\n")
    cli("--home", site.home, "consent", "import", csv)
    again = run_json(site)
    assert again["release"]["instances"] == 0 and again["upload"]["withdrawals_sent"] == 0


def test_dry_run_changes_nothing_and_says_what_it_would_send(site: Site, cli) -> None:
    site.consent_all(cli)
    report = run_json(site, "--dry-run")
    assert report["release"]["would_release"]["instances"] == ELIGIBLE
    assert not list((site.home / "outbox").glob("*.age")) and site.batches() == []
    assert run_json(site)["release"]["instances"] == ELIGIBLE


def test_second_run_exits_at_once_with_the_lock_code(site: Site) -> None:
    config = load_config(site.home)
    with exclusive(config.home.lock):
        proc = site.gateway("run")
    assert proc.returncode == LockHeldError.exit_code
    assert "another sfr-gateway run" in proc.stderr


def test_quiet_summary_line_when_all_is_well(site: Site, cli) -> None:
    site.consent_all(cli)
    proc = site.gateway("run")
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and "released 84 instances in 7 batches" in proc.stdout
    assert "attention" not in proc.stderr


def test_status_reports_batches_and_consent(site: Site, cli) -> None:
    site.consent_all(cli)
    run_json(site)
    proc = site.gateway("status", "--json")
    data = json.loads(proc.stdout)
    assert data["batches"]["acknowledged"]["batches"] == 7
    assert data["batches"]["acknowledged"]["files"] == ELIGIBLE
    assert data["consent"]["summary"] == "7 of 7 eligible studies (100%) releasable"
    assert data["last_success"] is not None


@pytest.mark.parametrize("point", ["after-scan", "after-begin-batch", "mid-package", "after-batch-written",
                                   "after-upload-before-ack", "after-upload-before-ack:4"])
def test_crash_at_every_step_then_rerun_delivers_exactly_once(site: Site, cli, point: str) -> None:
    site.consent_all(cli)
    crashed = site.gateway("run", "--workers", "1", env={"SFR_GATEWAY_FAULT": point})
    assert crashed.returncode == -9, crashed.stderr
    assert not list(site.dropbox.glob("*.part")) if site.dropbox.exists() else True
    final = site.gateway("run", "--json")
    assert final.returncode == 0, final.stderr
    datasets = site.open_all()
    counts = Counter(ds.SOPInstanceUID for ds in datasets)
    assert len(counts) == ELIGIBLE and set(counts.values()) == {1}
    outbox_visible = [p for p in (site.home / "outbox").iterdir() if p.is_file() and not p.name.startswith(".")]
    assert outbox_visible == []  # everything acknowledged, nothing half-written left in sight


def test_signing_key_rotation_announcement_reaches_the_central_host(site: Site) -> None:
    from sfr_gateway.crypto.sign import PublicKey, verify_file

    old = PublicKey.load(site.home / "keys" / "site-signing.pub")
    rotated = site.gateway("keys", "rotate-signing")
    assert rotated.returncode == 0, rotated.stderr
    report = run_json(site)
    assert report["upload"]["announcements_sent"] == 1
    (statement,) = site.dropbox.glob("signing-key-rotation-*.json")
    verify_file(statement, Path(str(statement) + ".minisig").read_text(), old)
    assert not list((site.home / "outbox").glob("signing-key-rotation-*"))
    assert run_json(site)["upload"]["announcements_sent"] == 0


def test_a_relative_home_works_like_an_absolute_one(site: Site, cli) -> None:
    """`--home gw` from the folder above it (found by the throughput benchmark: the embedded
    default drop folder's file URI needed an absolute path and `run` ended in a traceback)."""
    import subprocess
    import sys

    site.consent_all(cli)
    proc = subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", site.home.name, "run", "--json"],
                          capture_output=True, text=True, cwd=site.home.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["upload"]["acknowledged"] == report["release"]["batches"] == 7
    assert report["upload"]["destination"] == (site.home / "dropbox").as_uri()
    assert len(site.batches()) == 7


def test_a_run_with_nothing_new_does_not_load_the_engine(site: Site, cli) -> None:
    """Cron's usual case: the export was released already. The rescan, the gate and the upload
    stage run; pydicom and numpy (half of a start) are not even imported."""
    import subprocess
    import sys

    site.consent_all(cli)
    assert run_json(site)["release"]["instances"] == ELIGIBLE
    code = ("import json, sys\n"
            "from sfr_gateway.cli import main\n"
            f"rc = main(['--home', {str(site.home)!r}, 'run', '--json'])\n"
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'pydicom', 'numpy', 'sfr_gateway'})\n"
            "print(json.dumps({'rc': rc, 'loaded': loaded, 'engine': 'sfr_gateway.deid.engine' in sys.modules}),"
            " file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert seen == {"rc": 0, "loaded": ["sfr_gateway"], "engine": False}, proc.stderr
    report = json.loads(proc.stdout)
    assert report["release"]["instances"] == 0 and report["scan"]["this_scan"]["unchanged"] > 0
