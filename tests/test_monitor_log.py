"""The log file and the lines cron sees carry timestamps; the file rotates (stdlib handlers, safe
with several processes); syslog (which journald reads) is optional; no patient value is written.

Before issue 17: lines carried no timestamp, the file grew for ever, no syslog.
"""

from __future__ import annotations

import logging
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

from monitor_fixtures import add_config, make_site, planted_tokens, set_destination

from sfr_gateway.home import logfile
from sfr_gateway.monitor.settings import LogSettings

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


def test_run_lines_and_log_file_are_timestamped_and_free_of_patient_values(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=2, slices=2, seed=51)
    set_destination(site.home, (tmp_path / "gone").as_uri())
    proc = site.gateway("run")  # stdout and stderr are pipes, as under cron
    assert proc.returncode == 10
    assert re.fullmatch(rf"{STAMP} scanned 4 files .*\n", proc.stdout), proc.stdout
    lines = proc.stderr.splitlines()
    assert lines and all(re.match(rf"{STAMP} ", line) for line in lines), proc.stderr
    assert any(re.match(rf"{STAMP} attention: not delivered", line) for line in lines)
    assert any(re.match(rf"{STAMP} error: not delivered \(drop-folder\): \d+ batch(es)? stay pending", line) for line in lines)
    log = (site.home / "logs" / "sfr-gateway.log").read_text(encoding="utf-8")
    assert all(re.match(rf"{STAMP} (INFO|WARNING|ERROR) \[\d+\] sfr_gateway", line) for line in log.splitlines()
               if not line.startswith((" ", "Traceback"))), log
    assert re.search(rf"{STAMP} INFO \[\d+\] sfr_gateway.home.logfile: run: scanned 4 files", log)  # every run's summary
    assert "attention: not delivered" in log and "exit 10: not delivered (" in log
    for token in planted_tokens(site):
        assert token not in log, token


def test_the_log_file_rotates_and_two_processes_lose_no_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = """
import logging, sys
from pathlib import Path
from sfr_gateway.home import logfile
from sfr_gateway.monitor.settings import LogSettings
logfile.attach(Path(sys.argv[1]), LogSettings(max_bytes=4000, backups=100))
log = logging.getLogger("sfr_gateway.test")
for i in range(600):
    log.warning("writer %s line %04d %s", sys.argv[2], i, "x" * 40)
logfile.detach_all()
"""
    writers = [subprocess.Popen([sys.executable, "-c", script, str(home), name]) for name in ("A", "B")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    files = sorted((home / "logs").iterdir())
    assert len(files) > 10  # rotated: ~72 KB of lines in files of 4 KB
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert all(f.stat().st_size <= 2 * 4000 for f in files)  # about max_bytes (the other writer may append meanwhile)
    text = "".join(f.read_text() for f in files)
    for name in ("A", "B"):
        got = re.findall(rf"writer {name} line (\d{{4}})", text)
        assert sorted(got) == [f"{i:04d}" for i in range(600)], f"writer {name}: lines lost or repeated"


def test_rotation_keeps_the_number_of_backups(tmp_path: Path) -> None:
    logfile.attach(tmp_path, LogSettings(max_bytes=1000, backups=2))
    try:
        for i in range(200):
            logging.getLogger("sfr_gateway.test").warning("line %d %s", i, "y" * 30)
    finally:
        logfile.detach_all()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["sfr-gateway.log", "sfr-gateway.log.1",
                                                                      "sfr-gateway.log.2"]
    assert "line 199 " in (tmp_path / "logs" / "sfr-gateway.log").read_text()


def test_warnings_go_to_syslog_when_asked(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=52)
    set_destination(site.home, (tmp_path / "gone").as_uri())
    sock_path = tmp_path / "log.sock"  # a syslog socket of our own, as /dev/log is journald's
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.settimeout(5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    try:
        add_config(site.home, f'[log]\nsyslog = true\nsyslog_address = "{sock_path}"\nsyslog_facility = "local3"\n')
        assert site.gateway("run").returncode == 10
        got = []
        receiver.settimeout(1)
        try:
            while True:
                got.append(receiver.recv(65536).decode())
        except TimeoutError:
            pass
        # <PRI>: facility local3 (19) * 8 + warning (4) = 156
        assert any(m.startswith("<156>sfr-gateway[") and "not delivered" in m for m in got), got
        assert not any("INFO" in m for m in got)  # warnings and errors only
        # UDP to host:port
        config = site.home / "config.toml"
        config.write_text(config.read_text().replace(str(sock_path), f"127.0.0.1:{udp.getsockname()[1]}"))
        assert site.gateway("run").returncode == 10
        assert "not delivered" in udp.recv(65536).decode()
    finally:
        receiver.close()
        udp.close()


def test_no_syslog_socket_costs_nothing(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=53)
    add_config(site.home, f'[log]\nsyslog = true\nsyslog_address = "{tmp_path / "no-such.sock"}"\n')
    assert site.gateway("run").returncode == 0
    bad = site.home / "config.toml"
    bad.write_text(bad.read_text().replace('syslog = true', 'syslog = "yes"'))
    proc = site.gateway("status")
    assert proc.returncode == 3 and "log.syslog must be true or false" in proc.stderr
