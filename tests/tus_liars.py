"""A small tus 1.0 server on 127.0.0.1 (http.server in a thread) that can misbehave on purpose.

The real @tus/server (transport_fixtures.TusServer) is honest; the security review's findings
need servers that are not. ``LiarServer(mode)`` stores uploads in memory and, per ``mode``:

- ``honest``: a correct server (the baseline each misbehaviour is compared with);
- ``stuck``: every PATCH is answered 204 with the offset unchanged (bytes swallowed), up to
  ``STUCK_GIVES_UP`` of them (then 500s, so a client that loops fails a test instead of hanging it);
- ``claims-complete``: every HEAD answers ``Upload-Offset`` equal to ``Upload-Length``;
- ``backwards``: after the first PATCH it forgets everything (HEAD and PATCH answers go back to 0);
- ``beyond``: the first HEAD claims one byte more than the server received.

Any mode can also ``lose_everything()``: the server forgets the bytes of every upload it had
confirmed (a restart on storage that did not survive), and HEAD answers from what is left.

Test modules load it with ``pytest_plugins = ["tus_liars"]``; the fixture ``liar_tus(mode)``
starts one on an ephemeral port and stops it after the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

STUCK_GIVES_UP = 100
MODES = ("honest", "stuck", "claims-complete", "backwards", "beyond")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: the test reads ``requests`` instead."""

    def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Tus-Resumable", "1.0.0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _upload(self) -> dict[str, object] | None:
        return self.server.uploads.get(self.path.rsplit("/", 1)[-1])

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self.server.log("OPTIONS", self.path)
        self._reply(204, {"Tus-Version": "1.0.0", "Tus-Extension": "creation"})

    def do_POST(self) -> None:  # noqa: N802
        self._body()
        with self.server.lock:
            uid = f"u{len(self.server.uploads)}"
            self.server.uploads[uid] = {"length": int(self.headers["Upload-Length"]), "data": bytearray(),
                                        "patches": 0, "heads": 0}
        self.server.log("POST", self.path)
        self._reply(201, {"Location": f"/files/{uid}"})

    def do_HEAD(self) -> None:  # noqa: N802
        upload = self._upload()
        self.server.log("HEAD", self.path)
        if upload is None:
            self._reply(404)
            return
        length, data = int(upload["length"]), upload["data"]  # type: ignore[call-overload]
        offset = len(data)  # type: ignore[arg-type]
        mode = self.server.mode
        upload["heads"] = int(upload["heads"]) + 1  # type: ignore[call-overload]
        if mode == "claims-complete":
            offset = length
        elif mode == "beyond" and upload["heads"] == 1:
            offset = min(offset + 1, length)
        self._reply(200, {"Upload-Offset": str(offset), "Upload-Length": str(length), "Cache-Control": "no-store"})

    def do_PATCH(self) -> None:  # noqa: N802
        body = self._body()
        upload = self._upload()
        self.server.log("PATCH", self.path, int(self.headers.get("Upload-Offset") or -1))
        if upload is None:
            self._reply(404)
            return
        data: bytearray = upload["data"]  # type: ignore[assignment]
        if int(self.headers["Upload-Offset"]) != len(data):
            self._reply(409)
            return
        mode = self.server.mode
        upload["patches"] = int(upload["patches"]) + 1  # type: ignore[call-overload]
        if mode == "stuck" and int(upload["patches"]) > STUCK_GIVES_UP:  # type: ignore[call-overload]
            self._reply(500)  # bounds a test run against a client that would loop forever
            return
        if mode != "stuck":
            data += body
        if mode == "backwards" and upload["patches"] >= 2:
            del data[:]
        self._reply(204, {"Upload-Offset": str(len(data))})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.lock = threading.Lock()
        self.uploads: dict[str, dict[str, object]] = {}
        self.requests: list[tuple[str, str, int | None]] = []

    def log(self, method: str, path: str, offset: int | None = None) -> None:
        with self.lock:
            self.requests.append((method, path, offset))


class LiarServer:
    """One misbehaving tus server; ``url`` is its creation endpoint."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self._server = _Server(mode)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    def count(self, method: str) -> int:
        with self._server.lock:
            return sum(1 for r in self._server.requests if r[0] == method)

    def stored(self) -> list[bytes]:
        with self._server.lock:
            return [bytes(u["data"]) for u in self._server.uploads.values()]  # type: ignore[call-overload]

    def lose_everything(self) -> None:
        """Forget the bytes of every upload (the uploads themselves still answer HEAD)."""
        with self._server.lock:
            for upload in self._server.uploads.values():
                del upload["data"][:]  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def liar_tus(no_env_proxy: None) -> Iterator[Callable[[str], LiarServer]]:
    """Factory: ``liar_tus(mode)`` starts a misbehaving tus server on 127.0.0.1."""
    started: list[LiarServer] = []

    def start(mode: str) -> LiarServer:
        server = LiarServer(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
