"""Fixtures of the monitoring tests: small sites, config sections, a strict Prometheus text
parser, and real servers on 127.0.0.1 (SMTP, HTTP) that record what they receive."""

from __future__ import annotations

import base64
import json
import math
import re
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pydicom
import pytest
from bulkhead_fixtures import make_site
from pipeline_fixtures import Site

T = TypeVar("T")

__all__ = ["make_site", "Site", "add_config", "set_destination", "parse_prometheus", "value", "burn_in_one_slice",
           "SmtpServer", "WebhookServer", "smtp_server", "webhook_server", "planted_tokens"]


def add_config(home: Path, text: str) -> None:
    """Add settings to HOME/config.toml: each ``[section]`` of ``text`` goes under the same
    header of the file (``init`` writes them, commented), or at the end when it is not there."""
    config = home / "config.toml"
    current = config.read_text(encoding="utf-8")
    for block in re.split(r"(?m)^(?=\[)", text.strip()):
        header, _, body = block.partition("\n")
        if re.search(rf"(?m)^{re.escape(header.strip())}$", current):
            current = re.sub(rf"(?m)^{re.escape(header.strip())}$", lambda m, body=body: m.group(0) + "\n" + body.strip(),
                             current, count=1)
        else:
            current += "\n" + block.strip() + "\n"
    config.write_text(current, encoding="utf-8")


def set_destination(home: Path, url: str) -> None:
    config = home / "config.toml"
    text = re.sub(r'(?m)^destination = .*$', f'destination = "{url}"', config.read_text(encoding="utf-8"), count=1)
    config.write_text(text, encoding="utf-8")


def burn_in_one_slice(site: Site) -> Path:
    """Mark one eligible slice BurnedInAnnotation YES: the engine refuses it (quarantine)."""
    path = sorted(site.export.files)[0]
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(path, enforce_file_format=True)
    return path


def planted_tokens(site: Site) -> list[str]:
    """Every PHI value planted in the site's export (long enough to be searched for safely)."""
    tokens = {t for p in site.export.patients for values in p.tokens.values() for t in values}
    return sorted(t for t in tokens if len(t) >= 6)


# -- Prometheus text exposition format 0.0.4, strictly -----------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)(?: (-?\d+))?$")
_KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_prometheus(text: str) -> dict[str, dict]:
    """Families {name: {"help", "type", "samples": {(name, labels tuple): value}}}; any deviation
    from the format (a sample before its TYPE, a family split or repeated, a duplicate series, a
    bad label or value, no final newline) fails the test."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict] = {}
    current: str | None = None
    seen_series: set[tuple[str, tuple]] = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        assert line.strip() == line and line, f"line {number}: empty or padded: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and help_text, f"line {number}: bad HELP"
            assert name not in families, f"line {number}: family {name} repeated"
            families[name] = {"help": help_text, "type": None, "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and families[name]["type"] is None, f"line {number}: TYPE not right after its HELP"
            assert kind in _KINDS, f"line {number}: unknown type {kind}"
            families[name]["type"] = kind
        elif line.startswith("#"):
            continue
        else:
            m = _SAMPLE.match(line)
            assert m, f"line {number}: not a sample: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            assert current is not None and families[current]["type"], f"line {number}: sample before HELP/TYPE"
            allowed = {current} | ({f"{current}_total"} if families[current]["type"] == "counter" else set())
            assert name in allowed or name == current, f"line {number}: {name} outside its family {current}"
            pairs = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
            assert len({k for k, _ in pairs}) == len(pairs), f"line {number}: a label repeated"
            assert (name, pairs) not in seen_series, f"line {number}: duplicate series"
            seen_series.add((name, pairs))
            number_value = float(value)  # ValueError on anything else
            assert value in ("NaN", "+Inf", "-Inf") or not math.isnan(number_value)
            families[current]["samples"][pairs] = number_value
    for name, family in families.items():
        assert family["type"] and family["samples"], f"family {name} has no TYPE or no sample"
        if family["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
    return families


def value(families: dict[str, dict], name: str, **labels: str) -> float:
    """The value of the one series of ``name`` with exactly these labels."""
    (found,) = [v for pairs, v in families[name]["samples"].items() if dict(pairs) == labels]
    return found


# -- a real SMTP server on 127.0.0.1 ---------------------------------------------------------------

@dataclass
class SmtpServer:
    port: int
    messages: list[dict] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for smtplib: EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        box: SmtpServer = self.server.box  # type: ignore[attr-defined]
        self.reply("220 test.local ESMTP")
        sender, rcpts = "", []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "HELO":
                self.reply("250 test.local")
            elif verb == "AUTH":
                parts = line.split()
                blob = parts[2] if len(parts) > 2 else ""
                if not blob:
                    self.reply("334 ")
                    blob = self.rfile.readline().decode().strip()
                box.auth.append(base64.b64decode(blob).decode("utf-8", "replace"))
                self.reply("235 2.7.0 authenticated")
            elif verb == "MAIL":
                sender, rcpts = line[10:].strip("<> "), []
                self.reply("250 ok")
            elif verb == "RCPT":
                rcpts.append(line[8:].strip("<> "))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = []
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                box.messages.append({"from": sender, "to": rcpts, "data": b"".join(data)})
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    yield from _serve(server, SmtpServer(server.server_address[1]))


# -- a real webhook receiver on 127.0.0.1 -----------------------------------------------------------

@dataclass
class WebhookServer:
    port: int
    posts: list[dict] = field(default_factory=list)
    status: int = 204

    def url(self, path: str = "/hooks/alert") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        box: WebhookServer = self.server.box  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        box.posts.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        self.send_response(box.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
    yield from _serve(server, WebhookServer(server.server_address[1]))


def _serve(server: socketserver.BaseServer, box: T) -> Iterator[T]:
    """Serve on a thread until the test is done; the handlers find what they record in `box`."""
    server.box = box  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
