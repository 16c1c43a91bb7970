"""``https://...``: a resumable upload client for tus 1.0 (https://tus.io/protocols/resumable-upload).

Per part (the signature first, then the ciphertext):

1. If the ledger holds an upload URL for it, ``HEAD`` it: the server's ``Upload-Offset`` is
   the truth. We never re-create an upload we already created (stock ``@tus/server``
   overwrites a finished upload when a client re-creates the same upload ID).
2. Otherwise ``POST`` (creation extension) with ``Upload-Length`` and ``Upload-Metadata``
   (filename, batch_id, part, sha256, and for the signature the file it signs), and record
   the URL in the ledger before sending a byte.
3. ``PATCH`` chunks (``application/offset+octet-stream``), each with ``Upload-Checksum``
   (sha256, else sha1) when the server offers the checksum extension; record every
   confirmed offset.
4. Done only when the server answers ``Upload-Offset`` equal to the full length, to our final
   PATCH or to a HEAD after it. The ledger records how far the bytes were sent before they
   leave, so a server that claims more (an upload "complete" whose last bytes we never sent)
   is refused, in this process or the next: a lying or misconfigured server cannot make a
   batch count as delivered, and the local copy is kept.

Offsets only move forward: a server that goes back below an offset it confirmed, or beyond
what was sent, is refused with a TransportError that says so. A PATCH that does not advance
the offset counts against the retry budget like a failure (a server that accepts bytes and
never moves cannot hold a cron run, and the HOME lock, forever).

Connection errors, timeouts (a stalled link), 5xx, 408 and 429 are retried with exponential
backoff and jitter, never sooner than ``Retry-After``; a retry re-reads the offset with HEAD.
A ``Retry-After`` longer than ``backoff_max`` ends the call (TransportError): a cron run does
not sit for an hour holding the lock, the next run resumes. One budget of seconds bounds the
failures of a whole run (``retry_budget_seconds``: failed attempts and the waits between them,
over every batch): against a dead destination a run ends in about that long, naming the cause
(refused, DNS, TLS, timeout, HTTP status: ``transport.causes``), and the batches stay pending.
401/403 raise AuthError at once; 413 a TransportError that says the batch is too large.
TLS verification failures are never retried and never downgraded.

Known limit: a process killed between the server's answer to ``POST`` and the ledger commit
of the URL (or a POST whose answer is lost and retried) leaves one unfinished, orphaned upload
on the server; the batch is then sent to a new upload. The ledger is what prevents re-sending:
a lost state.db cannot be recovered from a tus server, which offers no lookup by metadata.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .. import __version__
from ..errors import AuthError, IntegrityError, TransportError
from ..home.faults import checkpoint
from ..home.logfile import file_only
from .base import (
    DATA,
    SIGNATURE,
    Destination,
    Progress,
    Receipt,
    TransportSettings,
    UploadState,
    check_batch,
    file_sha256,
    redact_url,
    utcnow,
)
from .causes import classify, http_status
from .retry import Retryable, RetryBudget, Throttle, ThrottledBody, backoff_delay, parse_retry_after

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
_CHECKSUM_PREFERENCE = ("sha256", "sha1")
_RETRY_STATUS = frozenset({408, 429})
_TLS_FATAL = (
    "certificate verify failed", "certificate_verify_failed", "hostname mismatch", "doesn't match",
    "wrong_version_number", "wrong version number", "unknown ca", "self signed", "self-signed",
)
_TLS_CLIENT_REFUSED = ("alert certificate required", "alert bad certificate", "alert unknown ca",
                       "alert certificate unknown", "alert access denied")


class _Gone(Exception):
    """The server no longer knows an upload URL we hold (404/410)."""


@dataclass(frozen=True)
class ServerInfo:
    """What ``OPTIONS`` told us about the server."""

    versions: tuple[str, ...]
    extensions: frozenset[str]
    checksum_algorithm: str | None
    max_size: int | None


@dataclass
class _PartResult:
    url: str
    resumed_from: int
    bytes_sent: int
    already_complete: bool


class TusDestination(Destination):
    """Upload batches to a tus 1.0 endpoint (the URL that answers creation POSTs)."""

    def __init__(
        self,
        url: str,
        settings: TransportSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.settings = settings or TransportSettings()
        self._sleep = sleep
        self._rng = rng
        self._server: ServerInfo | None = None
        self._throttle = Throttle(self.settings.bandwidth_limit, sleep=sleep, clock=clock)
        self.budget = RetryBudget(self.settings.retry_budget, clock=clock)  # shared by every send of this run
        # An explicit CA bundle path is passed on every request so REQUESTS_CA_BUNDLE cannot
        # override it; verification is never switched off.
        self._verify: str | bool = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        self._timeout = (self.settings.connect_timeout, self.settings.timeout)
        self._session = self._new_session()

    def _new_session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = True  # HTTPS_PROXY / NO_PROXY from the environment
        s.headers["Tus-Resumable"] = TUS_VERSION
        s.headers["User-Agent"] = f"sfr-gateway/{__version__}"
        if self.settings.bearer_token:
            s.headers["Authorization"] = f"Bearer {self.settings.bearer_token}"
        if self.settings.client_cert:
            cert = str(self.settings.client_cert)
            s.cert = (cert, str(self.settings.client_key)) if self.settings.client_key else cert
        return s

    def close(self) -> None:
        self._session.close()

    # -- the Destination interface ---------------------------------------------------------

    def send(
        self,
        batch_path: Path,
        batch_id: str,
        sha256: str,
        size: int,
        state: UploadState,
        *,
        progress: Progress | None = None,
    ) -> Receipt:
        done = state.receipt(batch_id)
        if done is not None:
            log.info("batch %s: already acknowledged by %s, nothing to send", batch_id, redact_url(self.url))
            return done
        batch_path = Path(batch_path)
        sha256 = sha256.lower()
        sig_path = check_batch(batch_path, sha256, size)
        sig_size = sig_path.stat().st_size
        sig_done = state.receipt(batch_id, SIGNATURE)
        if sig_done is not None:
            sig = _PartResult(sig_done.location, sig_size, 0, already_complete=True)
        else:
            sig = self._part(sig_path, batch_id, SIGNATURE, sig_size, {
                "filename": sig_path.name, "batch_id": batch_id, "part": SIGNATURE,
                "sha256": file_sha256(sig_path), "signs": batch_path.name, "filetype": "application/x-minisign",
            }, state, None)
        data = self._part(batch_path, batch_id, DATA, size, {
            "filename": batch_path.name, "batch_id": batch_id, "part": DATA, "sha256": sha256,
            "signature": sig_path.name, "filetype": "application/age-encrypted",
        }, state, progress)
        receipt = Receipt(
            batch_id=batch_id,
            destination=redact_url(self.url),
            location=redact_url(data.url),
            signature_location=redact_url(sig.url),
            sha256=sha256,
            size=size,
            bytes_sent=sig.bytes_sent + data.bytes_sent,
            resumed_from=data.resumed_from,
            already_complete=data.already_complete,
            completed_at=utcnow(),
        )
        state.mark_done(batch_id, receipt, DATA)
        log.info("batch %s: acknowledged by %s (%d bytes sent, resumed from %d)",
                 batch_id, redact_url(self.url), receipt.bytes_sent, receipt.resumed_from)
        return receipt

    def check(self) -> dict[str, Any]:
        """OPTIONS, then HEAD of an upload URL that cannot exist: proves TLS, reachability, credentials."""
        try:
            server = self._discover()
            resp = self._call("HEAD", urllib.parse.urljoin(self.url, "sfr-gateway-probe-does-not-exist"))
            if resp.status_code not in (404, 410):
                self._check(resp, "HEAD")
        except Retryable as exc:
            raise TransportError(self._named(exc), exc.cause) from None
        return {
            "destination": redact_url(self.url), "kind": "tus", "versions": list(server.versions),
            "extensions": sorted(server.extensions), "checksum": server.checksum_algorithm,
            "max_size": server.max_size,
        }

    # -- one file ---------------------------------------------------------------------------

    def _part(
        self,
        path: Path,
        batch_id: str,
        part: str,
        size: int,
        metadata: dict[str, str],
        state: UploadState,
        progress: Progress | None,
    ) -> _PartResult:
        """Bring one file to completion on the server; return its URL and what this call sent."""
        saved = state.load(batch_id, part)
        url: str | None = saved[0] if saved else None
        confirmed = saved[1] if saved else 0  # the highest offset the server ever confirmed to us
        offset: int | None = None
        resumed_from: int | None = None
        attempts = 0
        recreated = False
        while True:
            self.budget.attempt()
            try:
                server = self._discover()
                if url is None:
                    if server.max_size is not None and size > server.max_size:
                        raise TransportError(
                            f"{redact_url(self.url)} accepts uploads up to {server.max_size} bytes; "
                            f"batch {batch_id} is {size}: lower [batch] max_bytes"
                        )
                    url = self._create(size, metadata)
                    state.save(batch_id, url, 0, part)
                    offset = confirmed = 0
                if offset is None:
                    offset = self._head(url, size)
                    _check_claim(url, offset, confirmed, state.sent(batch_id, part), size)
                if resumed_from is None:
                    resumed_from = offset
                if offset >= size:
                    if part == SIGNATURE:
                        state.mark_done(batch_id, _signature_receipt(batch_id, url, size, self.url,
                                                                     metadata["sha256"]), SIGNATURE)
                    # bytes this call delivered, including those the server kept from a cut PATCH
                    return _PartResult(url, resumed_from, size - resumed_from, already_complete=resumed_from == size)
                state.note_sent(batch_id, min(offset + self.settings.chunk_size, size), part)  # before bytes leave
                offset = confirmed = self._patch(url, path, offset, size, server, progress)
                state.save(batch_id, url, offset, part)
                attempts = 0  # progress made: the retry budget is per stall, not per batch
            except _Gone:
                if recreated:
                    raise TransportError(f"{redact_url(url or self.url)}: upload vanished twice; giving up") from None
                log.warning("batch %s: the server no longer knows upload %s; creating a new one",
                            batch_id, redact_url(url or ""))
                recreated, url, offset = True, None, None
            except Retryable as exc:
                attempts += 1
                self.budget.failed()
                if exc.retry_after is not None and exc.retry_after > self.settings.backoff_max:
                    raise TransportError(
                        f"{self._named(exc)}; the server asks us to come back in "
                        f"{exc.retry_after:.0f} s: left to a later run", exc.cause
                    ) from None
                if attempts > self.settings.retries:
                    raise TransportError(
                        f"{self._named(exc)} (gave up after {attempts} attempts; next run resumes)",
                        exc.cause) from None
                delay = backoff_delay(attempts, self.settings.backoff_base, self.settings.backoff_max,
                                      exc.retry_after, self._rng)
                if not self.budget.allows(delay):
                    raise TransportError(
                        f"{self._named(exc)} ({attempts} attempt(s); this run's retry budget of "
                        f"{self.budget.seconds:.0f} s is spent; next run resumes)", exc.cause) from None
                file_only.info("batch %s %s: %s; retry %d/%d in %.1fs",
                               batch_id, part, exc, attempts, self.settings.retries, delay)
                log.info("batch %s %s: %s; retry %d/%d in %.1fs",
                         batch_id, part, exc, attempts, self.settings.retries, delay)
                self._sleep(delay)
                self.budget.waited(delay)
                offset = None  # whatever happened, ask the server where we are

    # -- protocol steps -----------------------------------------------------------------

    def _discover(self) -> ServerInfo:
        if self._server is not None:
            return self._server
        resp = self._call("OPTIONS", self.url)
        self._check(resp, "OPTIONS")
        if resp.status_code not in (200, 204):
            raise TransportError(f"{redact_url(self.url)}: OPTIONS answered {resp.status_code}: not a tus endpoint?")
        versions = tuple(v.strip() for v in resp.headers.get("Tus-Version", "").split(",") if v.strip())
        if TUS_VERSION not in versions:
            raise TransportError(f"{redact_url(self.url)}: server speaks tus {versions or 'nothing'}, we need 1.0.0")
        extensions = frozenset(e.strip() for e in resp.headers.get("Tus-Extension", "").split(",") if e.strip())
        if "creation" not in extensions:
            raise TransportError(f"{redact_url(self.url)}: server lacks the tus creation extension")
        algorithm = None
        if self.settings.checksum and "checksum" in extensions:
            offered = {a.strip().lower() for a in resp.headers.get("Tus-Checksum-Algorithm", "").split(",")}
            algorithm = next((a for a in _CHECKSUM_PREFERENCE if a in offered), None)
        max_size = resp.headers.get("Tus-Max-Size")
        self._server = ServerInfo(versions, extensions, algorithm,
                                  int(max_size) if max_size and max_size.isdigit() else None)
        log.debug("tus server %s: extensions %s, checksum %s", redact_url(self.url), sorted(extensions), algorithm)
        return self._server

    def _create(self, size: int, metadata: dict[str, str]) -> str:
        encoded = ",".join(
            f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" for key, value in metadata.items()
        )
        resp = self._call("POST", self.url, headers={"Upload-Length": str(size), "Upload-Metadata": encoded})
        self._check(resp, "POST")
        location = resp.headers.get("Location")
        if resp.status_code != 201 or not location:
            raise TransportError(f"{redact_url(self.url)}: creation answered {resp.status_code} without a Location")
        url = urllib.parse.urljoin(self.url, location)
        if _origin(url) != _origin(self.url):
            # never send our credentials (or the batch) to another host, nor downgrade https
            raise TransportError(
                f"{redact_url(self.url)}: the server put the upload at {redact_url(url)}, another origin; "
                "refused (a tus server behind a TLS proxy must be told to honour forwarded headers)"
            )
        log.info("created upload %s (%s, %d bytes)", redact_url(url), metadata.get("part"), size)
        return url

    def _head(self, url: str, size: int) -> int:
        resp = self._call("HEAD", url, headers={"Cache-Control": "no-store"})
        if resp.status_code in (404, 410):
            raise _Gone()
        self._check(resp, "HEAD")
        if resp.status_code not in (200, 204):
            raise TransportError(f"{redact_url(url)}: HEAD answered {resp.status_code}")
        offset = _header_int(resp, "Upload-Offset", url)
        length = resp.headers.get("Upload-Length")
        if length is not None and length.strip() != str(size):
            raise IntegrityError(
                f"{redact_url(url)}: the server's upload is {length.strip()} bytes long, the batch {size}: "
                "refusing to continue"
            )
        if offset > size:
            raise IntegrityError(f"{redact_url(url)}: server offset {offset} beyond the batch size {size}")
        return offset

    def _patch(
        self, url: str, path: Path, offset: int, size: int, server: ServerInfo, progress: Progress | None
    ) -> int:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(min(self.settings.chunk_size, size - offset))
        if not chunk:
            raise IntegrityError(f"{path.name}: shorter than {size} bytes")
        headers = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        if server.checksum_algorithm:
            digest = hashlib.new(server.checksum_algorithm, chunk).digest()
            headers["Upload-Checksum"] = f"{server.checksum_algorithm} {base64.b64encode(digest).decode('ascii')}"
        done = [offset]

        def on_sent(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(min(done[0], size), size)

        resp = self._call("PATCH", url, headers=headers, data=ThrottledBody(chunk, self._throttle, on_sent))
        if resp.status_code in (404, 410):
            raise _Gone()
        if resp.status_code == 409:
            raise Retryable(f"PATCH {redact_url(url)}: offset conflict (409)")
        if resp.status_code == 460:
            raise Retryable(f"PATCH {redact_url(url)}: checksum mismatch (460), resending the chunk")
        self._check(resp, "PATCH")
        if resp.status_code not in (200, 204):
            raise TransportError(f"PATCH {redact_url(url)} answered {resp.status_code}")
        new_offset = _header_int(resp, "Upload-Offset", url)
        if new_offset < offset:
            raise TransportError(
                f"PATCH {redact_url(url)}: the server went backwards (offset {new_offset} after confirming "
                f"{offset}): it lost bytes it had acknowledged; refusing to continue this upload"
            )
        if new_offset > offset + len(chunk):
            raise TransportError(
                f"PATCH {redact_url(url)}: the server claims offset {new_offset}, beyond the {offset + len(chunk)} "
                "bytes sent: refusing to believe it"
            )
        checkpoint("tus-after-patch")  # the server has the bytes, the ledger not yet the offset
        if new_offset == offset:  # a server that never advances must not keep the run (and the lock) forever
            raise Retryable(f"PATCH {redact_url(url)}: the server accepted {len(chunk)} bytes but did not advance "
                            f"its offset ({offset})")
        return new_offset

    # -- HTTP plumbing --------------------------------------------------------------------

    def _named(self, exc: Exception) -> str:
        """The message of ``exc``, naming the destination once."""
        text, url = str(exc), redact_url(self.url)
        return text if url in text else f"{url}: {text}"

    def _call(self, method: str, url: str, **kwargs: object) -> requests.Response:
        try:
            return self._session.request(
                method, url, timeout=self._timeout, verify=self._verify, allow_redirects=False, **kwargs  # type: ignore[arg-type]
            )
        except requests.exceptions.SSLError as exc:
            text = str(exc).lower()
            if any(marker in text for marker in _TLS_CLIENT_REFUSED):
                raise AuthError(f"{redact_url(url)}: the server refused our TLS client certificate") from None
            if any(marker in text for marker in _TLS_FATAL):
                raise TransportError(
                    f"{redact_url(url)}: TLS verification failed (server certificate not trusted or wrong "
                    "host name); check transport.ca_bundle. Never retried, never downgraded.", "tls"
                ) from None
            raise Retryable(f"{method} {redact_url(url)}: TLS connection lost", cause="tls") from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            cause = classify(exc)
            if cause.kind == "timeout" and isinstance(exc, requests.Timeout):
                words = "timed out (stalled link?): " + cause.words
            else:
                words = cause.words
            raise Retryable(f"{method} {redact_url(url)}: {words}", cause=cause.kind) from None

    def _check(self, resp: requests.Response, what: str) -> None:
        """Raise for statuses every step treats alike."""
        code = resp.status_code
        where = redact_url(resp.url or self.url)
        if code in (401, 403):
            raise AuthError(f"{what} {where}: the server refused our credentials ({code}); check [transport]")
        if code == 413:
            raise TransportError(
                f"{what} {where}: the server refuses a batch this large (413); lower [batch] max_bytes"
            )
        if code >= 500 or code in _RETRY_STATUS:
            raise Retryable(f"{what} {where}: server answered {http_status(code).words}",
                            parse_retry_after(resp.headers.get("Retry-After")), cause="http")
        if code >= 400:
            raise TransportError(f"{what} {where}: server answered {http_status(code).words}", "http")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _header_int(resp: requests.Response, name: str, url: str) -> int:
    value = (resp.headers.get(name) or "").strip()
    if not value.isdigit():
        raise TransportError(f"{redact_url(url)}: response without a valid {name} header")
    return int(value)


def _check_claim(url: str, offset: int, confirmed: int, sent: int, size: int) -> None:
    """Refuse a HEAD offset behind what the server confirmed, or beyond what this gateway sent.

    In particular a server's claim that an upload is complete counts only when the last byte
    was sent by us (recorded in the ledger before it left): then this HEAD is the confirmation
    after the final PATCH. A misconfigured or lying server never makes a batch "delivered".
    """
    where = redact_url(url)
    if offset < confirmed:
        raise TransportError(
            f"{where}: the server now holds {offset} bytes of this upload after confirming {confirmed}: it lost "
            "bytes it had acknowledged; refusing to continue (the batch stays in the outbox: the central host "
            "must check its storage)"
        )
    if offset > sent:
        claim = f"claims the upload is complete ({size} bytes)" if offset >= size else f"claims {offset} bytes"
        raise TransportError(
            f"{where}: the server {claim} but this gateway has sent only {sent}: not counted as delivered, "
            "the batch stays in the outbox (a misconfigured server, or another client writing to this upload?)"
        )


def _signature_receipt(batch_id: str, url: str, size: int, destination: str, sha256: str) -> Receipt:
    return Receipt(
        batch_id=batch_id, destination=redact_url(destination), location=redact_url(url),
        signature_location=redact_url(url), sha256=sha256, size=size, bytes_sent=0, resumed_from=0,
        already_complete=True, completed_at=utcnow(),
    )
