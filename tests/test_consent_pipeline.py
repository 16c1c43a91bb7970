"""Consent end to end (issue 14): real exports, real runs in new processes, real batches and
withdrawal requests opened as the central host opens them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from sfr_gateway.central import open_batch
from sfr_gateway.crypto.age import Identity
from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.home.config import load_config
from sfr_gateway.ledger import open_ledger
from sfr_gateway.sample import FakePatient, generate_export

ISSUER = "IPP-CHU-TEST"  # what the generated exports carry


@dataclass
class Site:
    home: Path
    export: Path
    patients: list[FakePatient]
    identity: Identity
    central: Path

    @property
    def dropbox(self) -> Path:
        return self.home / "dropbox"

    @property
    def site_key(self) -> Path:
        return self.home / "keys" / "site-signing.pub"

    def gateway(self, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real command in a new process (what cron and an operator do)."""
        return subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(self.home), *map(str, args)],
                              capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)

    def run(self) -> dict:
        proc = self.gateway("run", "--json", "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def opened(self) -> dict[str, tuple[dict, list[pydicom.Dataset]]]:
        """Every delivered batch, opened as the central host would: batch id -> (manifest, datasets)."""
        out: dict[str, tuple[dict, list[pydicom.Dataset]]] = {}
        target = self.central / f"opened-{time.monotonic_ns()}"
        for batch in sorted(self.dropbox.glob("*.tar.zst.age")):
            got = open_batch(batch, [self.identity], {"TEST01": PublicKey.load(self.site_key)}, target)
            out[got.batch_id] = (got.manifest, [pydicom.dcmread(p) for p in sorted(got.directory.rglob("*.dcm"))])
        return out

    def requests(self, cli) -> list[dict]:
        """Every delivered withdrawal request, checked by `central withdrawal` as the central host does
        (the site's key registered on the central host first, as for batches)."""
        central_home = self.central / "home"
        if not (central_home / "sites.json").exists():
            res = cli("central", "--central-home", central_home, "site", "add", "TEST01", self.site_key)
            assert res.exit_code == 0, res.stderr
        payloads = []
        for path in sorted(self.dropbox.glob("withdrawal-*.json")):
            res = cli("central", "--central-home", central_home, "withdrawal", path, "--json")
            assert res.exit_code == 0, res.stderr
            payloads.append(json.loads(res.stdout))
        return payloads

    def set_config(self, section: str, line: str) -> None:
        """Set ``key = value`` in ``[section]`` of config.toml (replacing the line `init` wrote)."""
        path = self.home / "config.toml"
        text = path.read_text(encoding="utf-8")
        key = line.split("=")[0].strip()
        head, sep, rest = text.partition(f"[{section}]\n")
        body, nxt, tail = rest.partition("\n[")
        lines = [ln for ln in body.splitlines() if not ln.startswith(f"{key} =")]
        path.write_text(head + sep + "\n".join([line, *lines]) + nxt + tail, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, cli) -> Site:
    """Three patients, one chest study of six slices each, under one issuer."""
    export = generate_export(tmp_path / "export", patients=3, seed=11, extras=False)
    identity = Identity.generate()
    home = tmp_path / "home"
    res = cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient),
              "--export", export.root)
    assert res.exit_code == 0, res.stderr
    return Site(home, export.root, export.patients, identity, tmp_path / "central")


def files_of(site: Site, patient: FakePatient) -> list[Path]:
    out = []
    for path in sorted(site.export.rglob("*.dcm")):
        if pydicom.dcmread(path, stop_before_pixels=True).get("PatientID") == patient.patient_id:
            out.append(path)
    return out


def add_follow_up(site: Site, patient: FakePatient) -> None:
    """A new study of the patient appears in the export (copies of their slices, new UIDs)."""
    study, series = generate_uid(), generate_uid()
    folder = site.export / f"follow-up-{patient.patient_id}"
    folder.mkdir()
    for n, path in enumerate(files_of(site, patient)):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n:04d}.dcm", enforce_file_format=True)


def patients_of(opened: dict) -> set[str]:
    return {p["pseudonym"] for manifest, _ in opened.values() for p in manifest["patients"]}


# --- acceptance: a hospital information system's export without an issuer column -------------------


def test_his_csv_without_issuer_column_is_released_by_the_next_run(site: Site, cli, tmp_path: Path) -> None:
    p0, p1, p2 = site.patients
    csv = tmp_path / "export-dpi.csv"
    csv.write_bytes((f"IPP;Statut;Date\n{p0.patient_id};Consentement;02/04/2020\n"
                     f"{p1.patient_id};Refus;02/04/2020\n{p2.patient_id};Consenti;03/04/2020\n").encode("cp1252"))
    res = cli("--home", site.home, "consent", "import", csv, "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["valid"], len(report["rejected"]), report["recorded"]) == (3, 0, 3)
    # nothing scanned yet: each consent says so (never silently ineffective)
    assert [r["line"] for r in report["not_applied"]] == [2, 4]
    first = site.run()
    assert first["consent"]["releasable_studies"] == 2 and first["consent"]["unresolved_records"] == {}
    assert first["release"]["instances"] == 12 and first["upload"]["acknowledged"] == 2
    opened = site.opened()
    assert sum(len(ds) for _, ds in opened.values()) == 12
    assert all(m["patients"][0]["consent_status"] == "consented" for m, _ in opened.values())
    shown = json.loads(site.gateway("consent", "show", p0.patient_id, "--json").stdout)
    assert shown["releasable"] is True and shown["identities"][0]["issuer"] == ISSUER
    assert shown["history"][0]["applies_to"]["identities"] == [{"patient_id": p0.patient_id, "issuer": ISSUER}]
    # a CSV imported after the scan resolves at once and says to what
    late = tmp_path / "late.csv"
    late.write_text(f"IPP;Statut;Date\n{p1.patient_id};consentement;05/05/2020\n", encoding="utf-8")
    report = json.loads(cli("--home", site.home, "consent", "import", late, "--json").stdout)
    assert report["not_applied"] == []
    assert site.run()["release"]["instances"] == 6


def test_a_consent_applied_to_no_scanned_patient_is_said_by_every_run(site: Site, cli) -> None:
    site.run()  # scanned: the exports carry one issuer
    res = cli("--home", site.home, "consent", "set", site.patients[0].patient_id, "consented", "--issuer", "OTHER")
    assert res.exit_code == 0 and "NOT APPLIED" in res.stderr and ISSUER in res.stderr
    line = site.gateway("run")
    assert line.returncode == 0 and "1 consent records applied to no scanned patient" in line.stdout
    shown = site.gateway("consent", "show", site.patients[0].patient_id)
    assert "not releasable" in shown.stdout and "NOT APPLIED" in shown.stdout


def test_declared_issuer_resolves_a_consent_recorded_before_the_first_scan(site: Site, cli) -> None:
    site.set_config("site", f'issuers = ["{ISSUER}"]')
    res = cli("--home", site.home, "consent", "set", site.patients[0].patient_id, "consented", "--json")
    assert res.exit_code == 0, res.stderr
    applies = json.loads(res.stdout)["applies_to"]
    assert applies["outcome"] == "resolved" and applies["identities"][0]["issuer"] == ISSUER
    assert site.run()["release"]["instances"] == 6


# --- acceptance: a withdrawal without issuer after a release under the exports' issuer --------------


def test_withdrawal_without_issuer_stops_later_releases_and_its_request_names_the_released_pseudonym(
    site: Site, cli,
) -> None:
    for p in site.patients:
        assert cli("--home", site.home, "consent", "set", p.patient_id, "consented", "--issuer", ISSUER,
                   "--date", "2026-01-15").exit_code == 0
    first = site.run()
    assert first["upload"]["acknowledged"] == 3
    opened = site.opened()
    victim = site.patients[1]
    victim_files = {ds.SOPInstanceUID for _, datasets in opened.values() for ds in datasets}
    assert victim_files
    released_pseudonyms = patients_of(opened)
    proc = site.gateway("consent", "withdraw", victim.patient_id, "--reason", "courrier", "--json")  # no --issuer
    assert proc.returncode == 0, proc.stderr
    change = json.loads(proc.stdout)
    assert change["applies_to"]["outcome"] == "all-issuers"
    assert change["applies_to"]["identities"] == [{"patient_id": victim.patient_id, "issuer": ISSUER}]
    assert change["already_released"]["studies"] == 1 and len(change["already_released"]["batches"]) == 1
    (victim_batch,) = change["already_released"]["batches"]
    victim_pseudonym = opened[victim_batch][0]["patients"][0]["pseudonym"]
    assert victim_pseudonym in released_pseudonyms
    add_follow_up(site, victim)  # a new study of the withdrawn patient appears in the export
    add_follow_up(site, site.patients[0])  # and one of a consented patient
    second = site.run()
    assert second["release"]["instances"] == 6  # only the consented patient's follow-up
    assert second["consent"]["waiting_studies"] == {"withdrawn": 2}
    assert second["upload"]["withdrawals_sent"] >= 1
    requests = site.requests(cli)
    assert victim_pseudonym in {r["pseudonym"] for r in requests}
    assert all(r["site"] == "TEST01" and victim.patient_id not in json.dumps(r) for r in requests)
    assert victim_pseudonym not in patients_of({k: v for k, v in site.opened().items() if k not in opened})
    third = site.run()
    assert third["release"]["instances"] == 0 and third["upload"]["withdrawals_sent"] == 0


def test_central_refuses_a_tampered_withdrawal_request(site: Site, cli) -> None:
    assert cli("--home", site.home, "consent", "set", site.patients[0].patient_id, "consented").exit_code == 0
    site.run()
    assert site.gateway("consent", "withdraw", site.patients[0].patient_id).returncode == 0
    site.run()
    assert len(site.requests(cli)) == 2  # the ID without issuer and under the exports' issuer; registers the key
    (path, *_) = sorted(site.dropbox.glob("withdrawal-*.json"))
    path.write_text(path.read_text().replace('"site":"TEST01"', '"site":"TEST02"'))
    res = cli("central", "--central-home", site.central / "home", "withdrawal", path)
    assert res.exit_code == 12 and "signature" in res.stderr
    unregistered = cli("central", "--central-home", site.central / "other", "withdrawal", path)
    assert unregistered.exit_code == 12 and "not registered" in unregistered.stderr


# --- late refusal: what left is reported and withdrawn, what did not is held -------------------------


def test_refusal_after_release_reports_and_requests_and_holds_what_was_not_sent(site: Site, cli) -> None:
    from sfr_gateway.run.release import release

    p0, p1, _ = site.patients
    for p in (p0, p1):
        assert cli("--home", site.home, "consent", "set", p.patient_id, "consented", "--date", "2026-01-15").exit_code == 0
    site.run()
    opened = site.opened()
    # p1's data left: refusing it now reports the batch and queues the withdrawal request
    res = cli("--home", site.home, "consent", "set", p1.patient_id, "refused", "--json")
    assert res.exit_code == 0, res.stderr
    change = json.loads(res.stdout)
    assert change["already_released"]["studies"] == 1 and change["requests_queued"] >= 1
    p1_pseudonym = opened[change["already_released"]["batches"][0]][0]["patients"][0]["pseudonym"]
    human = cli("--home", site.home, "consent", "set", p1.patient_id, "refused", "--reason", "again")
    assert human.exit_code == 0
    # a follow-up of p0 is packaged, then p0 refuses before it is sent: the upload holds it
    add_follow_up(site, p0)
    config = load_config(site.home)
    import datetime as dt

    with open_ledger(config.home.state_db) as ledger:
        from sfr_gateway.scan.walk import scan

        scan(ledger, [site.export], config.selection)
        assert release(ledger, config, today=dt.date.today(), workers=0).instances == 6
    refusal = json.loads(cli("--home", site.home, "consent", "set", p0.patient_id, "refused", "--json").stdout)
    assert len(refusal["already_released"]["batches"]) == 1  # the first study only; the follow-up never left
    report = site.run()
    assert report["upload"]["consent_held"] == 1 and report["upload"]["acknowledged"] == 0
    assert {r["pseudonym"] for r in site.requests(cli)} >= {p1_pseudonym}
    # consent again: the held batch goes
    assert cli("--home", site.home, "consent", "set", p0.patient_id, "consented").exit_code == 0
    report = site.run()
    assert report["upload"]["acknowledged"] == 1 and report["upload"]["consent_held"] == 0


# --- the gate sees every patient of what it packages: the race, with two processes -------------------


def two_patient_study(site: Site) -> None:
    """Patient 1's slices join patient 0's study (one study naming two patients); patient 2 goes."""
    p0, p1, p2 = site.patients
    study = pydicom.dcmread(files_of(site, p0)[0], stop_before_pixels=True).StudyInstanceUID
    for path in files_of(site, p1):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.save_as(path, enforce_file_format=True)
    for path in files_of(site, p2):
        path.unlink()


@pytest.mark.parametrize("point", ["after-gate", "after-begin-batch", "after-batch-written"])
@pytest.mark.parametrize("victim", [0, 1])
def test_withdrawal_committed_by_another_process_mid_run_stops_the_whole_two_patient_study(
    site: Site, cli, tmp_path: Path, point: str, victim: int,
) -> None:
    two_patient_study(site)
    for p in site.patients[:2]:
        assert cli("--home", site.home, "consent", "set", p.patient_id, "consented", "--issuer", ISSUER).exit_code == 0
    pause = tmp_path / "pause"
    pause.mkdir()
    run = subprocess.Popen([sys.executable, "-m", "sfr_gateway", "--home", str(site.home), "run", "--json",
                            "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "SFR_GATEWAY_PAUSE": f"{point}:{pause}"})
    try:
        deadline = time.monotonic() + 300
        while not (pause / f"{point}.paused").exists():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never reached the checkpoint"
            time.sleep(0.05)
        withdrawn = site.gateway("consent", "withdraw", site.patients[victim].patient_id, "--issuer", ISSUER)
        assert withdrawn.returncode == 0, withdrawn.stderr
    finally:
        (pause / f"{point}.resume").touch()
        out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    report = json.loads(out)
    assert report["release"]["instances"] == 0 and report["upload"]["acknowledged"] == 0, report
    assert not list(site.dropbox.glob("*.tar.zst.age")) if site.dropbox.exists() else True
    assert not list((site.home / "outbox").glob("*.tar.zst.age"))
    with open_ledger(load_config(site.home).home.state_db) as ledger:
        states = {r[0] for r in ledger.conn.execute("SELECT state FROM batches")}
    assert states <= {"cancelled"}
    assert site.run()["release"]["instances"] == 0  # and it stays so


def test_a_two_patient_study_makes_one_batch_per_patient(site: Site, cli) -> None:
    two_patient_study(site)
    for p in site.patients[:2]:
        assert cli("--home", site.home, "consent", "set", p.patient_id, "consented", "--issuer", ISSUER).exit_code == 0
    report = site.run()
    assert report["release"]["instances"] == 12 and report["upload"]["acknowledged"] == 2
    opened = site.opened()
    for manifest, datasets in opened.values():
        (patient,) = manifest["patients"]
        assert {ds.PatientID for ds in datasets} == {patient["pseudonym"]}
    assert len(patients_of(opened)) == 2
    assert len({ds.StudyInstanceUID for _, datasets in opened.values() for ds in datasets}) == 1
    # the local mapping knows both patients of the study under the pseudonyms that left
    found = set()
    for p in site.patients[:2]:
        res = cli("--home", site.home, "mapping", "lookup", "--patient-id", p.patient_id, "--json")
        assert res.exit_code == 0, res.stderr
        found |= {m["pseudonym"] for m in json.loads(res.stdout)["matches"]}
    assert found == patients_of(opened)


# --- patients without a Patient ID ------------------------------------------------------------------


def test_patients_without_patient_id_are_held_counted_and_released_only_by_choice(site: Site, cli) -> None:
    p0, p1, _ = site.patients
    for path in files_of(site, p1):
        ds = pydicom.dcmread(path)
        del ds.PatientID
        ds.save_as(path, enforce_file_format=True)
    scanned = json.loads(site.gateway("scan", "--json").stdout)
    assert scanned["without_patient_id"] == {"instances": 6, "eligible_instances": 6, "eligible_studies": 1}
    assert scanned["consent"]["waiting_studies"]["no-patient-id"] == 1
    human = site.gateway("scan")
    assert "No Patient ID: 6 instances" in human.stdout
    assert cli("--home", site.home, "consent", "set", p0.patient_id, "consented").exit_code == 0
    report = site.run()
    assert report["release"]["instances"] == 6  # p0 only: the file without ID is held, not dropped
    assert report["consent"]["without_patient_id"]["eligible_instances"] == 6
    line = site.gateway("run")
    assert "6 eligible instances without Patient ID held" in line.stdout
    status = json.loads(site.gateway("status", "--json").stdout)
    assert status["index"]["without_patient_id"]["eligible_instances"] == 6
    assert status["consent"]["waiting_studies"] == {"no-patient-id": 1, "unknown": 1}
    assert "no Patient ID: 6 eligible instances" in site.gateway("status").stdout
    audit = site.gateway("audit", site.export, "--format", "json", "--no-thumbnails")
    assert audit.returncode == 0, audit.stderr
    totals = json.loads(audit.stdout)["totals"]
    assert totals["without_patient_id"] == 6
    # the site's documented choice: release them (no consent can be checked)
    site.set_config("consent", 'without_patient_id = "release"')
    report = site.run()
    assert report["release"]["instances"] == 6
    new = [m for m, _ in site.opened().values() if m["patients"][0]["consent_status"] == "no-patient-id"]
    assert len(new) == 1
