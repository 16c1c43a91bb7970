"""`pull` against a real PACS (Orthanc on 127.0.0.1, its own config, ports and storage) holding
5 generated patients: only the consented patients' eligible chest-CT series come back, once."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomnet_fixtures import (
    ListenerProcess,
    Orthanc,
    free_port,
    gateway_cmd,
    incoming_files,
    listeners,  # noqa: F401
    set_config,
)

from sfr_gateway.home.config import SelectionRules
from sfr_gateway.sample import SampleExport
from sfr_gateway.scan.eligibility import eligibility
from sfr_gateway.scan.header import read_header
from sfr_gateway.scan.walk import _facts_for_selection

CONSENTED = (0, 1)


def eligible_uids(export: SampleExport, indexes: tuple[int, ...]) -> set[str]:
    ids = {export.patients[i].patient_id for i in indexes}
    out = set()
    for path in export.files:
        facts, _, _ = read_header(os.fsencode(path))
        if facts.patient_id in ids and eligibility(_facts_for_selection(facts), SelectionRules()) is None:
            out.add(facts.sop_instance_uid)
    return out


def received(home: Path) -> list[str]:
    return [read_header(os.fsencode(p))[0].sop_instance_uid for p in incoming_files(home)]


class PullSite:
    def __init__(self, home: Path, orthanc: Orthanc, listen_port: int) -> None:
        self.home, self.orthanc, self.listen_port = home, orthanc, listen_port

    def pull(self, *args: str) -> tuple[int, dict, str]:
        out = subprocess.run(gateway_cmd(self.home, "pull", "--json", *args), capture_output=True, text=True, timeout=600)
        try:
            report = json.loads(out.stdout)
        except json.JSONDecodeError:
            report = {}
        return out.returncode, report, out.stderr

    def set_pacs(self, line: str) -> None:
        set_config(self.home, "pacs", line)

    def studies(self) -> dict[str, tuple]:
        with sqlite3.connect(self.home / "state.db") as db:
            return {r[0]: r[1:] for r in db.execute("SELECT study_uid, state, attempts, completed, failed FROM pull_studies")}


@pytest.fixture
def orthanc(tmp_path: Path, sample_export: SampleExport) -> Iterator[Orthanc]:
    listen_port = free_port()
    pacs = Orthanc(tmp_path / "orthanc", modalities={"SFR_GATEWAY": ("127.0.0.1", listen_port)})
    try:
        pacs.start()
        pacs.upload(sample_export.files)
        yield pacs
    finally:
        pacs.kill()


@pytest.fixture
def pull_site(tmp_path: Path, orthanc: Orthanc, sample_export: SampleExport, cli) -> PullSite:
    home = tmp_path / "gateway home"
    assert cli("--home", home, "init", "--site-id", "TEST01").exit_code == 0
    port = orthanc.modalities["SFR_GATEWAY"][1]
    set_config(home, "dicom", f"port = {port}", 'bind = "127.0.0.1"', 'allowed_aes = ["ORTHANC"]')
    set_config(home, "pacs", 'host = "127.0.0.1"', f"port = {orthanc.dicom_port}", 'called_ae = "ORTHANC"',
               "timeout_seconds = 5")
    for i in CONSENTED:
        p = sample_export.patients[i]
        assert cli("--home", home, "consent", "set", p.patient_id, "consented", "--issuer", p.issuer,
                   "--date", "2026-01-15").exit_code == 0
    return PullSite(home, orthanc, port)


def test_pull_retrieves_only_the_consented_patients_eligible_series_and_a_second_pull_nothing(
        pull_site: PullSite, sample_export: SampleExport, listeners) -> None:
    listener = ListenerProcess(pull_site.home, port=pull_site.listen_port)
    listeners.append(listener)
    listener.start()  # `listen` as systemd runs it; the PACS C-MOVEs to it
    code, report, err = pull_site.pull()
    assert code == 0, err
    expected = eligible_uids(sample_export, CONSENTED)
    got = received(pull_site.home)
    assert sorted(got) == sorted(expected)  # nothing of the 3 others, no localizer, dose screen, head or old CT
    assert report["patients"] == 2 and report["studies"]["complete"] == report["studies_found"] == 3
    assert report["suboperations"] == {"completed": len(expected), "failed": 0, "warning": 0}
    assert report["listener"].startswith("running listener")
    assert set(pull_site.studies().values()) == {("complete", 0, 12, 0)}  # (state, failed attempts, completed, failed)
    before = {p: p.stat().st_mtime_ns for p in incoming_files(pull_site.home)}
    code, again, err = pull_site.pull()
    assert code == 0, err
    assert again["studies"] == {"complete": 0, "partial": 0, "failed": 0}
    assert again["suboperations"]["completed"] == 0 and again["skipped"]["already-retrieved"] == 3
    assert {p: p.stat().st_mtime_ns for p in incoming_files(pull_site.home)} == before


def test_pull_dry_run_retrieves_and_records_nothing(pull_site: PullSite, sample_export: SampleExport) -> None:
    code, report, err = pull_site.pull("--dry-run")
    assert code == 0, err
    assert report["to_retrieve"] == 3 and report["instances_expected"] == len(eligible_uids(sample_export, CONSENTED))
    assert incoming_files(pull_site.home) == [] and pull_site.studies() == {}


def test_pull_by_c_get_and_bounded_per_run(pull_site: PullSite, sample_export: SampleExport) -> None:
    pull_site.set_pacs('retrieve = "get"')
    pull_site.set_pacs("max_studies = 2")
    code, first, err = pull_site.pull()
    assert code == 0, err
    assert first["studies"]["complete"] == 2 and first["left_for_next"] == 1
    code, second, err = pull_site.pull()
    assert code == 0, err
    assert second["studies"]["complete"] == 1 and second["left_for_next"] == 0
    assert sorted(received(pull_site.home)) == sorted(eligible_uids(sample_export, CONSENTED))


def test_a_pacs_that_does_not_answer_gives_17_and_the_next_pull_resumes(pull_site: PullSite,
                                                                       sample_export: SampleExport) -> None:
    pull_site.orthanc.stop_process()  # SIGSTOP: connections queue, nothing answers
    try:
        code, report, err = pull_site.pull()
    finally:
        pull_site.orthanc.resume()
    assert code == 17
    assert "did not answer" in err and "within 5 s" in err
    assert incoming_files(pull_site.home) == []
    code, report, err = pull_site.pull()  # embedded listener: no `listen` process in this test
    assert code == 0, err
    assert report["listener"].startswith("started for this pull")
    assert sorted(received(pull_site.home)) == sorted(eligible_uids(sample_export, CONSENTED))


class CutOnMove:
    """A TCP relay to the PACS that cuts the connection when the client sends a C-MOVE request
    (Command Field 0x0021): the association dropped in the middle of a retrieval."""

    MOVE_RQ = b"\x00\x00\x00\x01\x02\x00\x00\x00\x21\x00"

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        try:
            while data := src.recv(65536):
                if watch and self.MOVE_RQ in data:
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.server.close()


def test_a_dropped_association_gives_17_and_the_next_pull_resumes(pull_site: PullSite,
                                                                  sample_export: SampleExport) -> None:
    relay = CutOnMove(pull_site.orthanc.dicom_port)
    try:
        text = (pull_site.home / "config.toml").read_text()
        (pull_site.home / "config.toml").write_text(text.replace(f"port = {pull_site.orthanc.dicom_port}",
                                                                 f"port = {relay.port}"))
        code, report, err = pull_site.pull()
    finally:
        relay.close()
    assert code == 17 and relay.cuts == 1
    assert "dropped the association" in err and "during a retrieval" in err
    assert report["studies"]["failed"] == 1
    assert [s[0] for s in pull_site.studies().values()] == ["failed"]
    (pull_site.home / "config.toml").write_text(text)  # the PACS is reachable again
    code, report, err = pull_site.pull()
    assert code == 0, err
    assert report["studies"]["complete"] == 3
    assert sorted(received(pull_site.home)) == sorted(eligible_uids(sample_export, CONSENTED))
    assert {s[0] for s in pull_site.studies().values()} == {"complete"}


def test_a_refused_move_destination_gives_18_and_the_next_pull_resumes(pull_site: PullSite,
                                                                       sample_export: SampleExport) -> None:
    pull_site.set_pacs('move_destination = "NOBODY"')
    code, report, err = pull_site.pull()
    assert code == 18, err
    assert "move destination" in err and "NOBODY" in err
    assert incoming_files(pull_site.home) == []
    text = (pull_site.home / "config.toml").read_text().replace('move_destination = "NOBODY"\n', "")
    (pull_site.home / "config.toml").write_text(text)
    code, report, err = pull_site.pull()
    assert code == 0, err
    assert sorted(received(pull_site.home)) == sorted(eligible_uids(sample_export, CONSENTED))


def test_pull_without_a_pacs_configured_is_3(home: Path, cli, sample_export: SampleExport) -> None:
    p = sample_export.patients[0]
    assert cli("--home", home, "consent", "set", p.patient_id, "consented", "--issuer", p.issuer).exit_code == 0
    result = cli("--home", home, "pull")
    assert result.exit_code == 3 and "[pacs]" in result.stderr


def test_our_listener_refusing_the_pacs_gives_18_naming_the_setting(pull_site: PullSite, sample_export: SampleExport,
                                                                     listeners) -> None:
    text = (pull_site.home / "config.toml").read_text()
    (pull_site.home / "config.toml").write_text(text.replace('allowed_aes = ["ORTHANC"]', 'allowed_aes = ["STORESCU"]'))
    strict = ListenerProcess(pull_site.home, port=pull_site.listen_port)  # does not accept the PACS's AE title
    listeners.append(strict)
    strict.start()
    code, report, err = pull_site.pull()
    assert code == 18, err
    assert "our listener rejected the PACS's association (calling AE ORTHANC" in err and "allowed_aes" in err
    assert incoming_files(pull_site.home) == []
    strict.stop()
    (pull_site.home / "config.toml").write_text(text)
    fixed = ListenerProcess(pull_site.home, port=pull_site.listen_port)
    listeners.append(fixed)
    fixed.start()
    code, report, err = pull_site.pull()
    assert code == 0, err
    assert sorted(received(pull_site.home)) == sorted(eligible_uids(sample_export, CONSENTED))


def test_a_partial_retrieval_is_counted_recorded_and_asked_again(pull_site: PullSite, sample_export: SampleExport) -> None:
    expected = eligible_uids(sample_export, CONSENTED)
    # the PACS's storage lost one file of the study retrieved last (the latest): Orthanc 1.10 then
    # fails that series' request as a whole (status C000, no counts), the other series come
    latest = max((f for f in sample_export.files if read_header(os.fsencode(f))[0].sop_instance_uid in expected),
                 key=lambda f: (read_header(os.fsencode(f))[0].study_date, f.name))
    damaged = pull_site.orthanc.stored_file(read_header(os.fsencode(latest))[0].sop_instance_uid)
    kept = damaged.read_bytes()
    damaged.unlink()
    code, report, err = pull_site.pull()
    assert code == 17 and "incomplete" in err
    assert report["studies"] == {"complete": 2, "partial": 1, "failed": 0}
    assert report["suboperations"]["completed"] == len(expected) - 6  # one series of six missing
    states = sorted(s[:4] for s in pull_site.studies().values())
    assert states == [("complete", 0, 12, 0), ("complete", 0, 12, 0), ("partial", 1, 6, 0)]
    damaged.write_bytes(kept)  # repaired
    code, report, err = pull_site.pull()
    assert code == 0, err
    assert report["studies"] == {"complete": 1, "partial": 0, "failed": 0}
    assert report["suboperations"]["completed"] == 6  # only the series still missing
    assert report["skipped"]["series:already-here"] == 1
    assert sorted(received(pull_site.home)) == sorted(expected)


def test_a_pacs_that_does_not_know_our_ae_title_gives_18(pull_site: PullSite) -> None:
    pull_site.set_pacs('calling_ae = "STRANGER"')
    code, report, err = pull_site.pull()
    assert code == 18, err
    assert "STRANGER" in err
