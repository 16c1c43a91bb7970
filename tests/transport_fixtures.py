"""Real parts for the transport tests: a tus server (node), a test PKI, a loopback fault proxy.

Test modules load them with ``pytest_plugins = ["transport_fixtures"]`` (tests/conftest.py is the lead's).
The tus server needs node and ``npm ci --prefix tests/tus-server`` (both installed by scripts/test.sh).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import json
import os
import select
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tool_fixtures import missing, require_tool

from sfr_gateway.ledger import Ledger, open_ledger

TUS_DIR = Path(__file__).parent / "tus-server"
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
             "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


# -- batches ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    path: Path
    batch_id: str
    sha256: str
    size: int

    @property
    def signature(self) -> Path:
        return self.path.with_name(self.path.name + ".minisig")


def make_batch(folder: Path, batch_id: str, size: int, seed: int = 0) -> Batch:
    """An opaque ``<batch>.age`` of ``size`` pseudo-random bytes and its ``.minisig`` beside it.

    Transport moves bytes it never opens, so the content need not be real age; the signature
    file has the shape of a minisign signature.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{batch_id}.age"
    data = hashlib.shake_256(f"{batch_id}:{seed}".encode()).digest(size) if size else b""
    path.write_bytes(data)
    path.with_name(path.name + ".minisig").write_text(
        "untrusted comment: signature from sfr-gateway site key\n"
        f"RWQ{hashlib.sha256(data).hexdigest()[:60]}\n"
        f"trusted comment: site=TEST batch={batch_id} sha256={hashlib.sha256(data).hexdigest()}\n"
        f"{hashlib.sha512(data).hexdigest()[:88]}\n",
        encoding="ascii",
    )
    return Batch(path, batch_id, hashlib.sha256(data).hexdigest(), size)


@pytest.fixture
def new_batch(tmp_path: Path) -> Callable[..., Batch]:
    """Factory: ``new_batch(batch_id, size, seed=0)`` writes a batch under ``tmp_path/outbox``."""

    def make(batch_id: str, size: int, seed: int = 0) -> Batch:
        return make_batch(tmp_path / "outbox", batch_id, size, seed)

    return make


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "state.db") as led:
        yield led


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback tests must not be routed through a proxy of the machine running them."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)


# -- PKI ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    wrong_host_cert: Path
    wrong_host_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, *, server: bool,
          names: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate, and two
    wrong ones: another CA, and a server certificate from the right CA for another host."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("sfr-gateway test CA")
    other, _ = _ca("some other CA")
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    srv, srv_key = _leaf(ca, ca_key, "localhost", server=True, names=loopback)
    cli, cli_key = _leaf(ca, ca_key, "site-TEST", server=False, names=[])
    wrong, wrong_key = _leaf(ca, ca_key, "central.example.org", server=True,
                             names=[x509.DNSName("central.example.org")])
    return Pki(
        ca=_write_cert(folder / "ca.pem", ca),
        server_cert=_write_cert(folder / "server.pem", srv),
        server_key=_write_key(folder / "server.key", srv_key),
        client_cert=_write_cert(folder / "client.pem", cli),
        client_key=_write_key(folder / "client.key", cli_key),
        other_ca=_write_cert(folder / "other-ca.pem", other),
        wrong_host_cert=_write_cert(folder / "wrong-host.pem", wrong),
        wrong_host_key=_write_key(folder / "wrong-host.key", wrong_key),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- the tus server ------------------------------------------------------------------------------

NODE_MIN = (20, 19)


@functools.cache
def _node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(x) for x in out.strip().lstrip("v").split(".")[:2])


class TusServer:
    """``node tests/tus-server/server.js`` on 127.0.0.1, any free port; its store and request log."""

    def __init__(self, workdir: Path, *args: str) -> None:
        node = require_tool("node", package="nodejs")
        version = _node_version(node)
        if version < NODE_MIN:
            missing(f"node >= {'.'.join(map(str, NODE_MIN))} for @tus/server, found {'.'.join(map(str, version))} "
                    "(Debian bookworm ships 18: nodejs 20.x from NodeSource)")
        if not (TUS_DIR / "node_modules" / "@tus" / "server").is_dir():
            missing("tus test server (npm ci --prefix tests/tus-server: ./scripts/test.sh runs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = workdir / "store"
        self.log_path = workdir / "requests.jsonl"
        self._stderr = open(workdir / "server.stderr", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [node, str(TUS_DIR / "server.js"), "--port", "0", "--dir", str(self.store), "--log",
             str(self.log_path), *args],
            cwd=TUS_DIR, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"tus server did not start: {(workdir / 'server.stderr').read_text()}")
        info = json.loads(line)
        self.port: int = info["port"]
        self.scheme: str = info["scheme"]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/files/"

    def requests(self, method: str | None = None) -> list[dict]:
        if not self.log_path.exists():
            return []
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [e for e in entries if "method" in e and (method is None or e["method"] == method)]

    def creations(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [e for e in map(json.loads, self.log_path.read_text().splitlines()) if e.get("event") == "create"]

    def uploads(self) -> dict[str, dict]:
        """Every upload in the store: id -> {"data": bytes, "info": metadata JSON}."""
        found = {}
        for info in sorted(self.store.glob("*.json")):
            data_file = info.with_suffix("")
            found[data_file.name] = {"data": data_file.read_bytes(), "info": json.loads(info.read_text())}
        return found

    def upload_of(self, filename: str) -> list[bytes]:
        """The stored bytes of every upload whose metadata filename is ``filename``."""
        return [u["data"] for u in self.uploads().values() if u["info"].get("metadata", {}).get("filename") == filename]

    def patch_offsets(self, filename: str) -> list[int]:
        """``Upload-Offset`` of every PATCH sent to the upload(s) named ``filename``, in order."""
        ids = {i for i, u in self.uploads().items() if u["info"].get("metadata", {}).get("filename") == filename}
        return [int(r["upload_offset"]) for r in self.requests("PATCH") if r["url"].rsplit("/", 1)[1] in ids]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def tus_server(tmp_path: Path, no_env_proxy: None) -> Iterator[Callable[..., object]]:
    """Factory: ``tus_server(*server_args)`` starts a server that is stopped after the test."""
    started: list[TusServer] = []

    def start(*args: str) -> TusServer:
        server = TusServer(tmp_path / f"tus{len(started)}", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the fault proxy -----------------------------------------------------------------------------

class FaultProxy:
    """A loopback TCP relay to ``target`` that can misbehave on request.

    - ``cut_after(n)``: after ``n`` more client-to-server bytes, close both sides (once);
    - ``fail_next(k, status, retry_after)``: answer the next ``k`` connections itself with an
      HTTP error (the request is read whole first) and close them;
    - ``stall_after(n)``: after ``n`` more bytes, swallow everything and answer nothing (once),
      until the client gives up and closes;
    - ``connect=True``: behave as an HTTP CONNECT proxy (what HTTPS_PROXY points at), tunnelling
      every CONNECT to ``target`` whatever host it names.
    Plain HTTP only for ``fail_next``; cut and stall work on TLS too.
    """

    def __init__(self, target: tuple[str, int], *, connect: bool = False) -> None:
        self.target = target
        self.connect_mode = connect
        self._lock = threading.Lock()
        self._cut: int | None = None
        self._stall: int | None = None
        self._fail: list[tuple[int, int | None]] = []
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self.connections = self.cuts = self.stalls = self.failed = self.tunnels = 0
        self.bytes_up = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/files/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._cut = n

    def stall_after(self, n: int) -> None:
        with self._lock:
            self._stall = n

    def fail_next(self, count: int, status: int = 503, retry_after: int | None = None) -> None:
        with self._lock:
            self._fail.extend([(status, retry_after)] * count)

    def close(self) -> None:
        self._closing.set()
        self._server.close()
        with self._lock:
            for s in list(self._sockets):
                _close(s)

    def _track(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(s)
        return s

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(self._track(client),), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.connect_mode:
                head = _read_head(client)
                if not head.startswith(b"CONNECT "):
                    client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                with self._lock:
                    self.tunnels += 1
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self._lock:
                failure = self._fail.pop(0) if self._fail else None
            if failure is not None:
                self._answer(client, *failure)
                return
            upstream = self._track(socket.create_connection(self.target))
        except OSError:
            _close(client)
            return
        stalled = threading.Event()
        down = threading.Thread(target=self._pump_down, args=(upstream, client, stalled), daemon=True)
        down.start()
        self._pump_up(client, upstream, stalled)
        down.join(5)

    def _answer(self, client: socket.socket, status: int, retry_after: int | None) -> None:
        head = _read_head(client)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while length > 0:
            data = client.recv(min(length, 65536))
            if not data:
                break
            length -= len(data)
        extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
        with self._lock:  # counted before the client can see the answer
            self.failed += 1
        client.sendall(f"HTTP/1.1 {status} Fault Injected\r\nTus-Resumable: 1.0.0\r\n{extra}"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        _close(client)

    def _pump_up(self, src: socket.socket, dst: socket.socket, stalled: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if stalled.is_set():
                    continue
                with self._lock:
                    if self._cut is not None and len(data) >= self._cut:
                        data, self._cut, cut = data[: self._cut], None, True
                        self.cuts += 1
                    else:
                        cut = False
                        if self._cut is not None:
                            self._cut -= len(data)
                    if not cut and self._stall is not None and len(data) >= self._stall:
                        data, self._stall = data[: self._stall], None
                        stalled.set()
                        self.stalls += 1
                    elif self._stall is not None:
                        self._stall -= len(data)
                    self.bytes_up += len(data)
                dst.sendall(data)
                if cut:
                    break
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)

    def _pump_down(self, src: socket.socket, dst: socket.socket, stalled: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if not stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            break
        head += data
    return head


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., object]]:
    """Factory: ``fault_proxy(server)`` relays to that TusServer; closed after the test."""
    proxies: list[FaultProxy] = []

    def start(server: TusServer, **kwargs: bool) -> FaultProxy:
        proxy = FaultProxy(("127.0.0.1", server.port), **kwargs)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def env_without_proxies() -> dict[str, str]:
    """The environment for a driver subprocess: no proxy of the host machine."""
    return {k: v for k, v in os.environ.items() if k not in PROXY_ENV}
