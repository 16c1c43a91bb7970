"""Real DICOM peers for the network tests: the gateway's listener as a process, dcmtk's tools,
and Orthanc (a real PACS) started on 127.0.0.1 with its own config, ports and storage.

Ports are never fixed: the listener binds port 0 and prints the one it got; Orthanc gets ports
that are free when it starts (and is restarted on other ones if it loses the race). Every
process started here is killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tool_fixtures import require_tool

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # dcmtk, not pynetdicom's same-named apps in the venv


def tool(name: str, package: str = "dcmtk") -> str:
    """The path of a Debian tool; skip the test (fail under CI=true) when it is not installed."""
    return require_tool(name, package=package, path=SYSTEM_PATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_cmd(home: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "sfr_gateway", "--home", str(home), *map(str, args)]


@dataclass
class ListenerProcess:
    """``sfr-gateway listen`` running in its own process (what systemd runs)."""

    home: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    log: Path | None = None

    def start(self) -> ListenerProcess:
        """Start on ``self.port`` (0: a free one, read from the ready line)."""
        self.log = self.home.parent / f"listen-{time.monotonic_ns()}.log"
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                gateway_cmd(self.home, "listen", "--port", str(self.port), "--bind", "127.0.0.1", *self.args),
                stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, **self.env})
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        if not line or "listening on" not in line[0]:
            self.kill()
            raise AssertionError(f"listener did not start: {line} {self.stderr()}")
        self.port = int(line[0].split()[2].rsplit(":", 1)[1].rstrip(";"))
        return self

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_dead(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM (the graceful stop systemd sends), SIGKILL if it does not go."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def listeners() -> Iterator[list[ListenerProcess]]:
    """Listener processes a test starts (append them); all stopped at teardown."""
    started: list[ListenerProcess] = []
    yield started
    for listener in started:
        listener.kill()


def storescu(port: int, *paths: str | Path, calling: str = "STORESCU", called: str = "SFR_GATEWAY",
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu: scan the folders given for DICOM files (+sd +r) and send them."""
    return subprocess.run([tool("storescu"), "-aet", calling, "-aec", called, "+sd", "+r", "-v", *extra,
                           "127.0.0.1", str(port), *map(str, paths)], capture_output=True, text=True, timeout=300)


def echoscu(port: int, calling: str = "STORESCU", called: str = "SFR_GATEWAY") -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60)


def incoming_files(home: Path) -> list[Path]:
    root = home / "incoming"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def partial_files(home: Path) -> list[Path]:
    root = home / ".incoming.partial"
    return sorted(root.iterdir()) if root.exists() else []


def set_config(home: Path, section: str, *lines: str) -> None:
    """Put ``lines`` (``key = value``) at the top of ``[section]`` of HOME/config.toml (``init``
    writes every section, its settings commented)."""
    path = home / "config.toml"
    text = path.read_text(encoding="utf-8")
    header = f"\n[{section}]\n"
    assert header in text, f"no [{section}] in config.toml"
    path.write_text(text.replace(header, header + "".join(line + "\n" for line in lines), 1), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Orthanc


@dataclass
class Orthanc:
    """A real PACS on 127.0.0.1: Debian's Orthanc with a throwaway config and storage."""

    root: Path
    aet: str = "ORTHANC"
    modalities: dict[str, tuple[str, int]] = field(default_factory=dict)
    dicom_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        binary = tool("Orthanc", "orthanc")
        self.root.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            if not self.dicom_port or _attempt:
                self.dicom_port, self.http_port = free_port(), free_port()
            config = self.root / "orthanc.json"
            config.write_text(json.dumps(self._config(), indent=2))
            with open(self.root / "orthanc.log", "ab") as log:
                self.proc = subprocess.Popen([binary, "--logdir=" + str(self.root), str(config)],
                                             stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
            if self._wait_ready():
                return self
            self.kill()
        raise AssertionError(f"Orthanc did not start: {(self.root / 'orthanc.log').read_text(errors='replace')[-3000:]}")

    def _config(self) -> dict[str, object]:
        modalities = {
            aet.lower(): {"AET": aet, "Host": host, "Port": port, "AllowEcho": True, "AllowFind": True,
                          "AllowMove": True, "AllowGet": True, "AllowStore": True}
            for aet, (host, port) in self.modalities.items()
        }
        return {
            "Name": "sfr-test-pacs", "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"), "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomCheckModalityHost": False, "DicomModalities": modalities, "Plugins": [],
            "StorageCompression": False, "ConcurrentJobs": 1, "DicomScpTimeout": 30, "DicomAssociationCloseDelay": 0,
            "HttpTimeout": 30, "StableAge": 1, "SaveJobs": False, "LimitFindResults": 0, "LimitFindInstances": 0,
            "MaximumStorageCacheSize": 0,
        }

    def _wait_ready(self, timeout: float = 60) -> bool:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/system", timeout=2).ok:
                    return True
            time.sleep(0.2)
        return False

    def upload(self, paths: list[Path]) -> None:
        """Load files through the REST API (what a modality's C-STORE would have done)."""
        import requests

        with requests.Session() as http:
            for path in paths:
                r = http.post(self.url + "/instances", data=path.read_bytes(), timeout=30)
                assert r.ok, r.text

    def stored_file(self, sop_instance_uid: str) -> Path:
        """Where Orthanc keeps one instance's file (to damage its storage in a fault test)."""
        import requests

        found = requests.post(self.url + "/tools/lookup", data=sop_instance_uid, timeout=10).json()
        (instance,) = [f["ID"] for f in found if f["Type"] == "Instance"]
        uuid = requests.get(f"{self.url}/instances/{instance}/attachments/dicom/info", timeout=10).json()["Uuid"]
        return self.root / "storage" / uuid[:2] / uuid[2:4] / uuid

    def studies(self) -> list[str]:
        import requests

        return list(requests.get(self.url + "/studies", timeout=10).json())

    def stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
