"""``listen``: the gateway as a DICOM Storage SCP (C-STORE, C-ECHO) for the site's PACS.

Associations are accepted only from the allowed calling AE titles (PS3.8 A-ASSOCIATE-RJ
"calling AE title not recognised" otherwise) and, when ``allowed_hosts`` is set, from those
addresses only (the connection is closed before any PDU is read). Every storage SOP Class is
negotiated, so a PACS sending a whole study is not cut off at association time; each instance is
then answered on its own:

- an image SOP Class the de-identification profile admits is written to the incoming folder
  (``store.Incoming``: temp, fsync, rename, fsync) and answered *success* only once durable;
- another SOP Class is answered 0122 (SOP Class not supported) and never written;
- a truncated or unparseable data set, or one whose UIDs differ from the request, is answered
  with a failure status (C000 / A900) and an Error Comment, recorded, never written;
- a full disk is answered A700 (out of resources): the PACS retries later.

Each refusal is a row of ``dicom_refusals`` (and a quarantine record for malformed data), each
association one event in the ledger (counts, AE title, address; no patient values).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from ..errors import ConfigError, DicomNetError
from ..home.config import Config
from ..home.fsutil import atomic_write_bytes
from ..ledger import Ledger, open_ledger
from ..ledger import dicomnet as sql
from . import statuses
from .store import Incoming, Stored

log = logging.getLogger(__name__)

# pynetdicom logs request and response identifiers (patient IDs, names) at debug level: never.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_PREAMBLE = b"\x00" * 128 + b"DICM"
_QUARANTINED = {"truncated", "unparseable", "missing-uid", "bad-uid", "uid-mismatch"}


@dataclass(frozen=True)
class ListenSettings:
    """What one listener runs with: ``[dicom]`` with the command line's overrides applied."""

    ae_title: str
    bind: str
    port: int
    allowed_aes: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    incoming: Path
    max_associations: int
    timeout: int
    check_called_ae: bool
    tls_certificate: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    @classmethod
    def from_config(cls, config: Config, *, port: int | None = None, ae_title: str | None = None,
                    allow: tuple[str, ...] = (), bind: str | None = None) -> ListenSettings:
        d = config.dicom
        allowed = tuple(dict.fromkeys([*d.allowed_aes, *allow]))
        if not allowed:
            raise ConfigError("no calling AE title is allowed to send: set [dicom] allowed_aes in config.toml "
                              "(the PACS's AE title) or give --allow AE")
        return cls(ae_title=ae_title or d.ae_title, bind=d.bind if bind is None else bind,
                   port=d.port if port is None else port, allowed_aes=allowed, allowed_hosts=d.allowed_hosts,
                   incoming=config.incoming, max_associations=d.max_associations, timeout=d.timeout_seconds,
                   check_called_ae=d.check_called_ae, tls_certificate=d.tls_certificate, tls_key=d.tls_key,
                   tls_ca=d.tls_ca)


def admitted_classes(config: Config) -> frozenset[str]:
    """The SOP Classes the site's de-identification profile releases (its ``[sop_classes] allow``)."""
    from ..deid.profile import compile_plan, load_profile

    overrides = config.overrides
    profile = load_profile(config.profile, options=tuple(config.options),
                           site_overrides=list(overrides.get("attribute", [])),
                           site_private_keep=list(overrides.get("private", [])))
    return frozenset(compile_plan(profile).sop_allow)


def tls_context(certificate: str, key: str, ca: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later); with ``ca``, client certificates required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certificate, key or None)
        if ca:
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[dicom] TLS: cannot load the certificate, key or CA: {exc}") from None
    return ctx


@dataclass
class _AssocStats:
    calling_ae: str
    address: str
    stored: int = 0
    duplicates: int = 0
    bytes: int = 0
    refused: Counter[str] = field(default_factory=Counter)


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server, closing connections from addresses not allowed."""

    allowed_networks: tuple[Any, ...] = ()
    on_refused_address: Any = None

    def get_request(self) -> tuple[Any, Any]:
        """Accept; with TLS, defer the handshake to the association's own thread (pynetdicom does it
        here, in the one accepting thread: a client that connects and says nothing would hold up
        every other sender until the timeout)."""
        assert self.socket is not None  # noqa: S101 - bound by the constructor
        client, address = self.socket.accept()
        if self.ssl_context:
            client.settimeout(self.ae.network_timeout)
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if not self.allowed_networks:
            return True
        try:
            address = ipaddress.ip_address(str(client_address[0]).split("%")[0])
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.allowed_networks):
            return True
        if self.on_refused_address:
            self.on_refused_address(str(client_address[0]))
        return False


class Listener:
    """A running C-STORE/C-ECHO SCP writing into the incoming folder (see the module docstring)."""

    def __init__(self, config: Config, settings: ListenSettings, *, ledger: Ledger | None = None) -> None:
        self.config = config
        self.settings = settings
        self.incoming = Incoming(settings.incoming, admitted_classes(config))
        self._ledger = ledger
        self._own_ledger = ledger is None
        self._db_lock = threading.Lock()
        self._stats: dict[int, _AssocStats] = {}
        self._stats_lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] = (settings.bind, settings.port)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind, start serving in a background thread, return the (address, port) bound."""
        s = self.settings
        self.incoming.prepare()
        if self._ledger is None:
            self._ledger = open_ledger(self.config.home.state_db)
        ae = AE(ae_title=s.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        ae.require_calling_aet = list(s.allowed_aes)
        ae.require_called_aet = s.check_called_ae
        ae.maximum_associations = s.max_associations
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = s.timeout
        ssl_ctx = tls_context(s.tls_certificate, s.tls_key, s.tls_ca) if s.tls_certificate else None
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: statuses.SUCCESS),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        try:
            server = cast(_Server, ae.make_server((s.bind, s.port), ae_title=s.ae_title, ssl_context=ssl_ctx,
                                                  evt_handlers=handlers, server_class=_Server))
        except OSError as exc:
            raise DicomNetError(f"cannot listen on {s.bind}:{s.port}: {exc.strerror or exc} "
                                "(port in use by another listener, or below 1024 without the capability?)") from None
        server.allowed_networks = tuple(ipaddress.ip_network(h, strict=False) for h in s.allowed_hosts)
        server.on_refused_address = self._on_refused_address
        ae._servers.append(server)
        self._ae, self.server = ae, server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sfr-listen", daemon=True)
        self._thread.start()
        host, port = server.server_address[:2]
        self.address = (str(host), int(port))
        self._event("start", "ok", {"ae_title": s.ae_title, "port": self.address[1], "allowed_aes": list(s.allowed_aes),
                                    "allowed_hosts": list(s.allowed_hosts), "tls": bool(ssl_ctx)})
        log.info("listening on %s:%d as %s", *self.address, s.ae_title)
        return self.address

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let associations in progress finish for up to ``grace`` seconds, then
        abort the rest (what they had not stored yet, the sender sends again)."""
        if self.server is None:
            return
        server, self.server = self.server, None
        server.shutdown()
        deadline = time.monotonic() + grace
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self._ae.active_associations:
            assoc.abort()
        self._event("stop", "ok", dict(self.totals))
        if self._own_ledger and self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers (pynetdicom's association threads) -------------------------------------------

    def _on_store(self, event: Any) -> int | Dataset:
        req = event.request
        sop_class = str(req.AffectedSOPClassUID)
        sop_instance = str(req.AffectedSOPInstanceUID)
        result = store_event(self.incoming, event)
        stats = self._stats_of(event.assoc)
        if result.ok:
            stats.stored += 1
            stats.duplicates += result.duplicate
            stats.bytes += result.size
            return statuses.SUCCESS
        stats.refused[result.reason or "?"] += 1
        self._refuse(event, stats, sop_class, sop_instance, result)
        answer = Dataset()
        answer.Status = result.status
        answer.ErrorComment = f"{result.reason}: {statuses.REFUSALS[result.reason or 'unparseable'][1]}"[:64]
        return answer

    def _refuse(self, event: Any, stats: _AssocStats, sop_class: str, sop_instance: str, result: Stored) -> None:
        reason = result.reason or "?"
        log.warning("refused an instance from %s (%s): %s, status 0x%04X (SOP Class %s)", stats.calling_ae,
                    stats.address, reason, result.status, sop_class)
        with self._db_lock:
            if self._ledger is not None:
                sql.record_refusal(self._ledger, stats.calling_ae, stats.address, sop_class, sop_instance,
                                   result.status, reason, result.detail)
        if reason in _QUARANTINED:
            self._quarantine(event, stats, sop_class, sop_instance, result)

    def _quarantine(self, event: Any, stats: _AssocStats, sop_class: str, sop_instance: str, result: Stored) -> None:
        """A record in HOME/quarantine like the pipeline's (and the bytes only if keep_copies)."""
        folder = self.config.home.quarantine
        qid = "listen-" + hashlib.sha256(f"{sop_instance}|{time.time_ns()}".encode()).hexdigest()[:20]
        record: dict[str, Any] = {
            "id": qid, "source": f"dicom:{stats.calling_ae}@{stats.address}", "reason": result.reason,
            "detail": result.detail, "sop_class": sop_class, "status": f"0x{result.status:04X}",
            "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        try:
            if self.config.quarantine_copies:
                atomic_write_bytes(folder / f"{qid}.dcm", event.encoded_dataset(), mode=0o600)
                record["copy"] = f"{qid}.dcm"
            atomic_write_bytes(folder / f"{qid}.json",
                               (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode=0o600)
        except OSError as exc:
            log.error("cannot write the quarantine record %s: %s", qid, exc.strerror or exc)

    def _stats_of(self, assoc: Any) -> _AssocStats:
        with self._stats_lock:
            stats = self._stats.get(id(assoc))
            if stats is None:
                stats = self._stats[id(assoc)] = _AssocStats(_calling(assoc), _peer(assoc))
            return stats

    def _on_established(self, event: Any) -> None:
        stats = self._stats_of(event.assoc)
        log.info("association from %s (%s) accepted", stats.calling_ae, stats.address)

    def _on_rejected(self, event: Any) -> None:
        calling, address = _calling(event.assoc), _peer(event.assoc)
        called = str(getattr(event.assoc.acceptor, "ae_title", "") or "")
        reason = "calling AE title not allowed" if calling not in self.settings.allowed_aes else "rejected"
        log.warning("association from %s (%s) rejected: %s", calling, address, reason)
        self.totals["rejected"] += 1
        self._event("reject", "refused", {"calling_ae": calling, "called_ae": called, "address": address,
                                          "reason": reason})

    def _on_refused_address(self, address: str) -> None:
        log.warning("connection from %s closed: address not in [dicom] allowed_hosts", address)
        self.totals["rejected"] += 1
        self._event("reject", "refused", {"address": address, "reason": "address not allowed"})

    def _on_close(self, event: Any) -> None:
        with self._stats_lock:
            stats = self._stats.pop(id(event.assoc), None)
        if stats is None:
            return
        self.totals["stored"] += stats.stored
        self.totals["refused"] += sum(stats.refused.values())
        self.totals["bytes"] += stats.bytes
        self._event("association", "partial" if stats.refused else "ok", {
            "calling_ae": stats.calling_ae, "address": stats.address, "stored": stats.stored,
            "duplicates": stats.duplicates, "bytes": stats.bytes, "refused": dict(stats.refused),
        })

    def _event(self, action: str, result: str, detail: dict[str, Any]) -> None:
        with self._db_lock:
            if self._ledger is None:
                return
            try:
                self._ledger.record_event("listen", action, result, detail)
            except Exception as exc:  # noqa: BLE001 - the audit trail must not stop the listener
                log.error("cannot record the %s event in the ledger: %s", action, exc)


def store_event(incoming: Incoming, event: Any) -> Stored:
    """Store the instance of a C-STORE request (listener or C-GET) as it came: preamble, the file
    meta pynetdicom derives from the request and context, and the data set bytes, undecoded."""
    req = event.request
    return incoming.store(str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID),
                          (_PREAMBLE, encode_file_meta(event.file_meta), req.DataSet.getbuffer()))


def _calling(assoc: Any) -> str:
    return str(getattr(assoc.requestor, "ae_title", "") or "").strip()


def _peer(assoc: Any) -> str:
    return str(getattr(assoc.requestor, "address", "") or "")


def serve(listener: Listener, stop: threading.Event, ready: Any = None) -> None:
    """Run ``listener`` until ``stop`` is set (the CLI sets it on SIGTERM or SIGINT);
    ``ready()`` is called once it accepts connections."""
    listener.start()
    try:
        if ready:
            ready()
        while not stop.wait(0.5):
            pass
    finally:
        listener.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (tests and benchmarks; a listener given port 0 picks its own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


__all__ = ["ListenSettings", "Listener", "admitted_classes", "serve", "store_event", "tls_context", "free_port"]
