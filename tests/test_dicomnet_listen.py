"""`listen`: dcmtk's storescu (a real modality) sends to the gateway's listener process; `run`
without arguments scans what arrived and releases only what consent and selection allow."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from dicomnet_fixtures import (
    ListenerProcess,
    echoscu,
    gateway_cmd,
    incoming_files,
    listeners,  # noqa: F401
    partial_files,
    set_config,
    storescu,
    tool,
)
from pipeline_fixtures import Site

from sfr_gateway.crypto.age import Identity
from sfr_gateway.home.config import SelectionRules
from sfr_gateway.sample import SampleExport, generate_export
from sfr_gateway.scan.eligibility import eligibility
from sfr_gateway.scan.header import read_header
from sfr_gateway.scan.walk import _facts_for_selection


@pytest.fixture(scope="module")
def two_patients(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    """A generated 2-patient study set (localizers, dose screens, two chest series)."""
    return generate_export(tmp_path_factory.mktemp("two patients"), patients=2, seed=11)


@pytest.fixture
def dicom_site(tmp_path: Path, two_patients: SampleExport, cli) -> Site:
    """A gateway HOME with a central key, no export folder: everything comes over DICOM."""
    identity = Identity.generate()
    home = tmp_path / "gateway home"
    assert cli("--home", home, "init", "--site-id", "TEST01", "--central-recipient", str(identity.recipient)).exit_code == 0
    set_config(home, "dicom", 'allowed_aes = ["STORESCU", "MODALITY"]')
    return Site(home, two_patients, identity, tmp_path / "central")


def start(listeners: list[ListenerProcess], home: Path, *args: str, env: dict[str, str] | None = None) -> ListenerProcess:
    listener = ListenerProcess(home, args, env or {})
    listeners.append(listener)
    return listener.start()


def eligible_uids(export: SampleExport, patient_index: int) -> set[str]:
    """SOP Instance UIDs of one patient's instances the selection rules keep (read from the files)."""
    out = set()
    patient = export.patients[patient_index]
    for path in export.files:
        facts, _, _ = read_header(os.fsencode(path))
        if facts.patient_id == patient.patient_id and eligibility(_facts_for_selection(facts), SelectionRules()) is None:
            out.add(facts.sop_instance_uid)
    return out


def ledger(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "state.db")


def test_storescu_to_listen_then_run_releases_exactly_the_consented_patient(dicom_site: Site, listeners, cli) -> None:
    listener = start(listeners, dicom_site.home)
    sent = storescu(listener.port, dicom_site.export.root)
    assert sent.returncode == 0, sent.stderr
    files = incoming_files(dicom_site.home)
    assert len(files) == len(dicom_site.export.files)  # every instance, both patients
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert not partial_files(dicom_site.home)
    chosen = dicom_site.export.patients[0]
    assert cli("--home", dicom_site.home, "consent", "set", chosen.patient_id, "consented", "--issuer", chosen.issuer,
               "--date", "2026-01-15").exit_code == 0
    proc = dicom_site.gateway("run", "--json")  # no arguments: the incoming folder is a default source
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    expected = eligible_uids(dicom_site.export, 0)
    assert expected and expected.isdisjoint(eligible_uids(dicom_site.export, 1) | {""})
    assert report["release"]["instances"] == len(expected)
    with ledger(dicom_site.home) as db:
        released = {r[0] for r in db.execute("SELECT sop_instance_uid FROM releases WHERE state = 'packaged'")}
    assert released == expected
    datasets = dicom_site.open_all()
    assert len(datasets) == len(expected)
    assert len({ds.PatientID for ds in datasets}) == 1 and all(ds.PatientIdentityRemoved == "YES" for ds in datasets)
    assert all(ds.SOPInstanceUID not in expected for ds in datasets)  # de-identified UIDs
    assert listener.alive()


def test_a_calling_ae_not_allowed_is_rejected_and_recorded(dicom_site: Site, listeners) -> None:
    listener = start(listeners, dicom_site.home)
    assert echoscu(listener.port).returncode == 0  # an allowed AE may echo
    refused = echoscu(listener.port, calling="INTRUDER")
    assert refused.returncode != 0 and "rejected" in (refused.stdout + refused.stderr).lower()
    sent = storescu(listener.port, dicom_site.export.files[0], calling="INTRUDER")
    assert sent.returncode != 0
    assert "Calling AE Title Not Recognized" in sent.stdout + sent.stderr
    wrong_called = echoscu(listener.port, called="SOMEONE_ELSE")
    assert wrong_called.returncode != 0
    assert incoming_files(dicom_site.home) == []
    listener.stop()
    with ledger(dicom_site.home) as db:
        rows = db.execute("SELECT detail FROM events WHERE command = 'listen' AND action = 'reject'")
        rejects = [json.loads(d) for (d,) in rows]
    assert {r["calling_ae"] for r in rejects} >= {"INTRUDER"}
    assert all(r["address"] == "127.0.0.1" for r in rejects)
    assert "INTRUDER" in listener.stderr()


def test_an_address_not_allowed_is_refused(dicom_site: Site, listeners) -> None:
    set_config(dicom_site.home, "dicom", 'allowed_hosts = ["10.20.0.0/16"]')
    listener = start(listeners, dicom_site.home)
    assert echoscu(listener.port).returncode != 0
    assert storescu(listener.port, dicom_site.export.files[0]).returncode != 0
    assert incoming_files(dicom_site.home) == []
    assert "address not in [dicom] allowed_hosts" in listener.stderr()


def test_a_sop_class_the_profile_does_not_admit_is_refused_with_0122(dicom_site: Site, listeners, tmp_path: Path) -> None:
    mr = generate_export(tmp_path / "mr", patients=5, seed=11)  # patient 4 has an MR study
    mr_files = [p for p in mr.files if read_header(os.fsencode(p))[0].modality == "MR"]
    assert mr_files
    listener = start(listeners, dicom_site.home)
    sent = storescu(listener.port, mr_files[0])
    assert sent.returncode != 0
    assert "SOPClassNotSupported" in sent.stdout + sent.stderr
    assert incoming_files(dicom_site.home) == [] and not partial_files(dicom_site.home)
    with ledger(dicom_site.home) as db:
        rows = db.execute("SELECT reason, status, calling_ae FROM dicom_refusals").fetchall()
    assert rows == [("not-admitted", 0x0122, "STORESCU")]
    assert listener.alive()


def _send_raw(port: int, path: Path, calling: str = "MODALITY") -> tuple[int, str]:
    """Send a file's bytes as they are (pynetdicom's chunked C-STORE, in a child process): the
    way to put a truncated data set on the wire (dcmtk's storescu refuses to read one)."""
    code = (
        "import sys\n"
        "from pynetdicom import AE, _config\n"
        "from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian\n"
        "_config.STORE_SEND_CHUNKED_DATASET = True\n"
        "ae = AE(ae_title=sys.argv[3])\n"
        "ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)  # the file's, sent unconverted\n"
        "assoc = ae.associate('127.0.0.1', int(sys.argv[1]), ae_title='SFR_GATEWAY')\n"
        "assert assoc.is_established\n"
        "try:\n"
        "    rsp = assoc.send_c_store(sys.argv[2])\n"
        "finally:\n"
        "    assoc.release()\n"
        "print(int(rsp.Status), rsp.get('ErrorComment', ''))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(port), str(path), calling], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    status, _, comment = out.stdout.strip().partition(" ")
    return int(status), comment


def test_a_truncated_data_set_gets_a_failure_status_and_a_quarantine_record(dicom_site: Site, listeners,
                                                                            tmp_path: Path) -> None:
    source = dicom_site.export.files[1]
    data = source.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) - 3000])  # the pixel data ends early
    listener = start(listeners, dicom_site.home)
    status, comment = _send_raw(listener.port, truncated)
    assert status == 0xC000 and comment.startswith("truncated")
    assert incoming_files(dicom_site.home) == [] and not partial_files(dicom_site.home)
    records = [json.loads(p.read_text()) for p in (dicom_site.home / "quarantine").glob("listen-*.json")]
    assert [(r["reason"], r["status"], r["source"]) for r in records] == [("truncated", "0xC000", "dicom:MODALITY@127.0.0.1")]
    patient = dicom_site.export.patients[0]
    assert patient.family not in json.dumps(records, ensure_ascii=False)
    with ledger(dicom_site.home) as db:
        assert db.execute("SELECT reason, status FROM dicom_refusals").fetchall() == [("truncated", 0xC000)]
    # the listener is still there, and the whole file goes through
    status, _ = _send_raw(listener.port, source)
    assert status == 0 and len(incoming_files(dicom_site.home)) == 1


def test_uids_that_differ_from_the_request_are_refused(dicom_site: Site, listeners, tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(dicom_site.export.files[1])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".9"  # the request names another instance
    wrong = tmp_path / "wrong.dcm"
    ds.save_as(wrong)  # file meta written as it is (enforce_file_format would rewrite it)
    listener = start(listeners, dicom_site.home)
    status, comment = _send_raw(listener.port, wrong)
    assert status == 0xA900 and comment.startswith("uid-mismatch")
    assert incoming_files(dicom_site.home) == []


def test_listener_killed_mid_transfer_leaves_nothing_partial_and_the_resend_arrives_once(
        dicom_site: Site, listeners, cli) -> None:
    files = dicom_site.export.files
    dying = start(listeners, dicom_site.home, env={"SFR_GATEWAY_FAULT": "listen-before-rename:3"})
    sent = storescu(dying.port, dicom_site.export.root)
    assert sent.returncode != 0  # the association died under the sender
    assert dying.wait_dead() == -9
    assert len(incoming_files(dicom_site.home)) == 2  # two durable instances before the kill
    assert len(partial_files(dicom_site.home)) == 1  # the third, fsynced but never renamed
    scanned = dicom_site.gateway("scan", "--json")  # what `run` sees: only whole files
    assert scanned.returncode == 0, scanned.stderr
    this = json.loads(scanned.stdout)["this_scan"]
    assert this["seen"] == 2 and this["unreadable"] == 0
    again = start(listeners, dicom_site.home)  # restarted: the dead listener's temp file is removed
    assert not partial_files(dicom_site.home)
    first = {p: p.stat().st_mtime_ns for p in incoming_files(dicom_site.home)}
    resent = storescu(again.port, dicom_site.export.root)  # the PACS sends the study again
    assert resent.returncode == 0, resent.stderr
    arrived = incoming_files(dicom_site.home)
    assert len(arrived) == len(files)
    assert {p: p.stat().st_mtime_ns for p in first} == first  # already complete: left untouched
    dicom_site.consent_all(cli)
    report = json.loads(dicom_site.gateway("run", "--json").stdout)
    expected = eligible_uids(dicom_site.export, 0) | eligible_uids(dicom_site.export, 1)
    assert report["release"]["instances"] == len(expected)
    with ledger(dicom_site.home) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT sop_instance_uid) FROM releases").fetchone() == (
            len(expected), len(expected))


def test_released_files_are_removed_from_incoming_after_the_acknowledgement(dicom_site: Site, listeners, cli) -> None:
    set_config(dicom_site.home, "dicom", "keep_released_days = 0")
    listener = start(listeners, dicom_site.home)
    assert storescu(listener.port, dicom_site.export.root).returncode == 0
    chosen = dicom_site.export.patients[0]
    assert cli("--home", dicom_site.home, "consent", "set", chosen.patient_id, "consented", "--issuer", chosen.issuer,
               "--date", "2026-01-15").exit_code == 0
    report = json.loads(dicom_site.gateway("run", "--json").stdout)
    expected = eligible_uids(dicom_site.export, 0)
    assert report["upload"]["incoming_removed"] == len(expected)
    left = {read_header(os.fsencode(p))[0].sop_instance_uid for p in incoming_files(dicom_site.home)}
    assert left and left.isdisjoint(expected)  # the other patient's files, and the excluded ones, stay
    assert len(left) == len(dicom_site.export.files) - len(expected)
    rerun = json.loads(dicom_site.gateway("run", "--json").stdout)
    assert rerun["scan"]["this_scan"]["missing"] == 0 and rerun["release"]["instances"] == 0
    assert dicom_site.export.root.is_dir() and len(list(dicom_site.export.root.rglob("*.dcm"))) == len(dicom_site.export.files)


def test_listen_refuses_to_start_without_allowed_ae_titles(home: Path) -> None:
    out = subprocess.run(gateway_cmd(home, "listen", "--port", "0"), capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "allowed_aes" in out.stderr


def test_listen_on_a_port_in_use_is_17(dicom_site: Site, listeners) -> None:
    listener = start(listeners, dicom_site.home)
    out = subprocess.run(gateway_cmd(dicom_site.home, "listen", "--port", str(listener.port), "--bind", "127.0.0.1"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 17 and f"127.0.0.1:{listener.port}" in out.stderr


def test_a_bad_ae_title_in_the_config_is_3(home: Path, cli) -> None:
    set_config(home, "dicom", 'ae_title = "MUCH_TOO_LONG_AE_TITLE"')
    result = cli("--home", home, "status")
    assert result.exit_code == 3 and "dicom.ae_title" in result.stderr


def test_a_cron_run_does_not_import_pynetdicom(dicom_site: Site, listeners) -> None:
    listener = start(listeners, dicom_site.home)
    assert storescu(listener.port, dicom_site.export.files[0]).returncode == 0
    code = ("import json, sys\nfrom sfr_gateway.cli import main\n"
            f"rc = main(['--home', {str(dicom_site.home)!r}, 'run'])\n"
            "print(json.dumps({'rc': rc, 'pynetdicom': 'pynetdicom' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "pynetdicom": False}, out.stderr


def _tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(cn: str, issuer: tuple | None, ca: bool, san: list | None = None) -> tuple:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        builder = (x509.CertificateBuilder().subject_name(name(cn)).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (name(cn), key)
        cert = builder.issuer_name(signer_name).sign(signer_key, hashes.SHA256())
        return cert, key

    ca = issue("sfr test CA", None, True)
    server = issue("127.0.0.1", ca, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = issue("PACS", ca, False)
    out = {}
    for label, (cert, key) in {"ca": ca, "server": server, "client": client}.items():
        out[f"{label}.pem"] = folder / f"{label}.pem"
        out[f"{label}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{label}.key"] = folder / f"{label}.key"
        out[f"{label}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        out[f"{label}.key"].chmod(0o600)
    return out


def test_dicom_tls_with_client_certificates(dicom_site: Site, listeners, tmp_path: Path) -> None:
    tls = _tls_files(tmp_path / "tls")
    set_config(dicom_site.home, "dicom", f'tls_certificate = "{tls["server.pem"]}"', f'tls_key = "{tls["server.key"]}"',
               f'tls_ca = "{tls["ca.pem"]}"')
    listener = start(listeners, dicom_site.home)
    import socket

    silent = socket.create_connection(("127.0.0.1", listener.port))  # connects, never says a word
    first, second = dicom_site.export.files[1], dicom_site.export.files[2]
    ok = storescu(listener.port, first, extra=("+tls", str(tls["client.key"]), str(tls["client.pem"]), "-pw",
                                                 "+cf", str(tls["ca.pem"])))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert len(incoming_files(dicom_site.home)) == 1
    assert storescu(listener.port, second).returncode != 0  # plain TCP to a TLS port
    anonymous = storescu(listener.port, second, extra=("+tla", "+cf", str(tls["ca.pem"])))
    assert anonymous.returncode != 0  # no client certificate
    assert len(incoming_files(dicom_site.home)) == 1
    assert echoscu_tls_ok(listener.port, tls)  # the listener still serves after the failed handshakes
    silent.close()


def echoscu_tls_ok(port: int, tls: dict[str, Path]) -> bool:
    out = subprocess.run([tool("echoscu"), "-aet", "STORESCU", "-aec", "SFR_GATEWAY", "+tls", str(tls["client.key"]),
                          str(tls["client.pem"]), "-pw", "+cf", str(tls["ca.pem"]), "127.0.0.1", str(port)],
                         capture_output=True, text=True, timeout=60)
    return out.returncode == 0
