"""Destinations (issue 17): each failure named by its cause (refused, DNS, TLS, timeout, HTTP
status), a bounded retry budget per run, readable lines instead of a dict, `destination check
--json` printing JSON whatever happens, and `init --destination` reaching the destination first.

Real servers on 127.0.0.1 (ephemeral ports): a socket bound but not listening (connections
refused), one listening but never answering (timeout), a tiny HTTP server answering 503, the
node tus server."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from operation_fixtures import STAMP, own_site  # noqa: F401
from pipeline_fixtures import Site

from sfr_gateway.errors import TransportError

pytest_plugins = ["transport_fixtures"]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection is refused (and the port stays ours)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def status_503() -> Iterator[int]:
    """A real HTTP server answering 503 to everything."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_OPTIONS = do_HEAD = do_GET = do_POST = do_PATCH = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _set(home: Path, destination: str, transport: str = "") -> None:
    config = home / "config.toml"
    text = config.read_text(encoding="utf-8")
    lines = [f'destination = "{destination}"' if line.startswith("destination =") else line
             for line in text.splitlines()]
    text = "\n".join(lines) + "\n"
    if transport:
        text = text.replace("[transport]\n", "[transport]\n" + transport + "\n", 1)
    config.write_text(text, encoding="utf-8")


def _check(cli, home: Path) -> tuple[int, dict]:
    result = cli("--home", home, "destination", "check", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_refused_destination_run_exits_10_within_60s_then_upload_delivers_every_batch_once(
        own_site: Site, cli, refusing_port: int, tus_server) -> None:
    site = own_site
    _set(site.home, f"http://127.0.0.1:{refusing_port}/files/")  # the default retry settings
    site.consent_all(cli)
    started = time.monotonic()
    proc = site.gateway("run")
    took = time.monotonic() - started
    assert proc.returncode == TransportError.exit_code == 10, proc.stderr
    assert took < 60, took
    assert "Traceback" not in proc.stderr and "{" not in proc.stderr
    named = [line for line in proc.stderr.splitlines() if "connection refused" in line]
    assert named and STAMP.sub("", named[0], count=1).startswith("attention: not delivered: "), proc.stderr
    assert "7 batches stay pending" in named[0]
    assert "retry" not in proc.stderr.lower().replace("retry budget", "")  # no line per retry on the terminal
    db = site.home / "state.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM batches WHERE state IN ('packaged', 'failed')").fetchone() == (7,)

    server = tus_server()
    _set(site.home, server.url)
    upload = site.gateway("upload", "--json")
    assert upload.returncode == 0, upload.stderr
    assert json.loads(upload.stdout)["acknowledged"] == 7
    names = [u["info"]["metadata"]["filename"] for u in server.uploads().values()]
    batches = [n for n in names if n.endswith(".age")]
    assert len(batches) == 7 and len(set(batches)) == 7  # every pending batch, once
    again = site.gateway("upload", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["acknowledged"] == 0
    assert len(server.uploads()) == len(names)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM batches WHERE state = 'acknowledged'").fetchone() == (7,)


def test_each_cause_is_named_and_check_json_prints_json(
        home: Path, cli, refusing_port: int, silent_port: int, status_503: int, no_env_proxy: None) -> None:
    fast = "retries = 1\nbackoff_seconds = 0\ntimeout_seconds = 1\nconnect_timeout_seconds = 1"
    cases = [
        (f"http://127.0.0.1:{refusing_port}/files/", "refused", "connection refused"),
        ("https://no-such-host.invalid/files/", "dns", "host name not found"),
        (f"http://127.0.0.1:{silent_port}/files/", "timeout", "timed out"),
        (f"http://127.0.0.1:{status_503}/files/", "http", "HTTP 503 Service Unavailable"),
    ]
    _set(home, cases[0][0], fast)
    for url, cause, words in cases:
        _set(home, url)
        code, data = _check(cli, home)
        assert code == 10, data
        assert data["ok"] is False and data["cause"] == cause and words in data["error"], data
        assert "connection failed" not in data["error"]
    _set(home, (home / "dropbox").as_uri())  # the default drop folder: reachable
    code, data = _check(cli, home)
    assert code == 0 and data["ok"] is True and data["kind"] == "drop folder", data


def test_run_with_a_silent_destination_is_bounded_by_the_retry_budget(
        own_site: Site, cli, silent_port: int) -> None:
    """A destination that never answers (each attempt a timeout): the run still ends within the
    budget (plus one attempt), naming the cause."""
    site = own_site
    _set(site.home, f"http://127.0.0.1:{silent_port}/files/",
         "retry_budget_seconds = 4\ntimeout_seconds = 1\nconnect_timeout_seconds = 1\nretries = 100")
    site.consent_all(cli)
    started = time.monotonic()
    proc = site.gateway("run")
    assert proc.returncode == 10, proc.stderr
    assert "retry budget of 4 s is spent" in proc.stderr and "timed out" in proc.stderr
    assert time.monotonic() - started < 60


def test_init_reaches_the_destination_unless_told_not_to(tmp_path: Path, cli, refusing_port: int,
                                                         no_env_proxy: None) -> None:
    url = f"http://127.0.0.1:{refusing_port}/files/"
    home = tmp_path / "home"
    refused = cli("--home", home, "init", "--site-id", "TEST01", "--destination", url)
    assert refused.exit_code == 10, refused.stderr
    assert "connection refused" in refused.stderr and "--no-check" in refused.stderr
    assert not (home / "config.toml").exists()  # nothing created
    forced = cli("--home", home, "init", "--site-id", "TEST01", "--destination", url, "--no-check")
    assert forced.exit_code == 0, forced.stderr
    unknown = cli("--home", tmp_path / "h2", "init", "--site-id", "TEST01", "--destination",
                  "https://no-such-host.invalid/files/")
    assert unknown.exit_code == 10 and "host name not found" in unknown.stderr


def test_upload_command_prints_a_line_not_a_dict(own_site: Site, cli, refusing_port: int) -> None:
    site = own_site
    site.consent_all(cli)
    assert site.gateway("run", "--dry-run").returncode == 0
    _set(site.home, f"http://127.0.0.1:{refusing_port}/files/", "retry_budget_seconds = 2")
    run = site.gateway("run")
    assert run.returncode == 10
    proc = subprocess.run([sys.executable, "-m", "sfr_gateway", "--home", str(site.home), "upload"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10
    assert "{" not in proc.stderr and "connection refused" in proc.stderr
    assert proc.stderr.count("\n") <= 2, proc.stderr  # the cause line and the exit line
