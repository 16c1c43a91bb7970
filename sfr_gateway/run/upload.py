"""Upload: deliver packaged batches and queued withdrawal requests to the destination.

Each batch is sent by the destination (drop folder or tus), which resumes from the ledger's
recorded offset and never sends a complete batch twice; it is marked ``acknowledged`` only after
the destination confirmed the whole file (and its signature). Credentials refused (401/403)
stop the run at once: a human must act. Other transport errors leave the batch pending for the
next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..batch.names import batch_path, signature_path
from ..consent import registry as consent
from ..errors import AuthError, IntegrityError, TransportError
from ..home.config import DEFAULT_DESTINATION_DIRNAME, Config
from ..home.faults import checkpoint
from ..home.fsutil import atomic_write_bytes, atomic_write_text
from ..home.logfile import file_only
from ..ledger import Ledger
from ..ledger import batches as sql
from ..transport.base import redact_url
from ..transport.registry import destination_for
from ..transport.state import SqliteUploadState

log = logging.getLogger(__name__)


@dataclass
class UploadReport:
    """What an upload pass did."""

    destination: str = ""
    acknowledged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    withdrawals_sent: int = 0
    announcements_sent: int = 0
    cancelled_removed: int = 0
    consent_held: list[str] = field(default_factory=list)
    pending: int = 0
    failure: dict[str, str] | None = None  # the first failure: its cause and message

    def note_failure(self, item: str, exc: Exception) -> None:
        """``item`` was not delivered because of ``exc`` (kept pending for the next run)."""
        self.failed[item] = str(exc)
        if self.failure is None:
            self.failure = {"cause": getattr(exc, "cause", "") or type(exc).__name__, "message": str(exc)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination, "acknowledged": len(self.acknowledged),
            "acknowledged_ids": self.acknowledged, "failed": self.failed, "bytes_sent": self.bytes_sent,
            "withdrawals_sent": self.withdrawals_sent, "announcements_sent": self.announcements_sent,
            "cancelled_removed": self.cancelled_removed, "consent_held": len(self.consent_held),
            "consent_held_ids": self.consent_held,
            "pending": self.pending, "failure": self.failure,
        }


def _remove_cancelled(ledger: Ledger, config: Config) -> int:
    removed = 0
    for b in sql.batches(ledger, ["cancelled"]):
        path = batch_path(config.home.outbox, b.batch_id)
        for p in (signature_path(path), path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += p == path
    return removed


def upload(
    ledger: Ledger,
    config: Config,
    *,
    progress: Callable[[int, int], None] | None = None,
    today: dt.date | None = None,
) -> UploadReport:
    """Send every packaged (or previously failed) batch whose patients are still releasable
    (the others stay in the outbox: ``consent_held``), then the withdrawal requests."""
    url = config.effective_destination
    report = UploadReport(destination=redact_url(url))
    report.cancelled_removed = _remove_cancelled(ledger, config)
    todo = sql.batches(ledger, ["packaged", "failed"])
    requests = consent.withdrawal_requests(ledger, "pending")
    if not todo and not requests and not _announcements(config):
        return report
    if not config.destination:  # the embedded default drop folder lives in HOME: create it
        (config.home.root / DEFAULT_DESTINATION_DIRNAME).mkdir(mode=0o700, exist_ok=True)
    state = SqliteUploadState(ledger, url)
    with destination_for(url, config.transport) as dest:
        for b in todo:
            if sql.batch_state(ledger, b.batch_id) not in ("packaged", "failed"):
                continue  # cancelled by a withdrawal since we listed it
            if not _claim(ledger, config, b, today or dt.date.today()):
                report.consent_held.append(b.batch_id)  # refused since it was packaged: kept until releasable
                continue
            path = batch_path(config.home.outbox, b.batch_id)
            try:
                receipt = dest.send(path, b.batch_id, b.sha256 or "", b.size or 0, state, progress=progress)
            except AuthError:
                sql.mark_failed(ledger, b.batch_id, "credentials refused by the destination")
                raise
            except (TransportError, IntegrityError) as exc:
                sql.mark_failed(ledger, b.batch_id, str(exc))
                report.note_failure(b.batch_id, exc)
                file_only.warning("batch %s not delivered: %s", b.batch_id, exc)
                if isinstance(exc, TransportError):
                    break  # the destination is unwell: leave the rest for the next run
                continue
            checkpoint("after-upload-before-ack")
            if sql.mark_acknowledged(ledger, b.batch_id):
                report.acknowledged.append(b.batch_id)
                report.bytes_sent += receipt.bytes_sent
                if not config.keep_sent:  # only after the destination confirmed every byte
                    for p in (signature_path(path), path):
                        with contextlib.suppress(FileNotFoundError):
                            p.unlink()
        else:
            _send_withdrawals(ledger, config, dest, state, requests, report)
            _send_announcements(config, dest, state, report)
    report.pending = len(sql.batches(ledger, ["packaged", "failed"]))
    ledger.record_event("upload", "upload", "ok" if not report.failed else "partial", report.as_dict())
    return report


def _claim(ledger: Ledger, config: Config, b: sql.Batch, today: dt.date) -> bool:
    """Re-check the batch's consent and mark it as being sent, in one transaction: a refusal
    committed meanwhile either holds it or sees that it may have left (and queues a request)."""
    with ledger.transaction() as conn:
        if not consent.batch_releasable(conn, b.study_uid, config.consent, today):
            return False
        sql.mark_sending(conn, b.batch_id)
        return True


def _send_withdrawals(ledger: Ledger, config: Config, dest: Any, state: Any, requests: list[Any],
                      report: UploadReport) -> None:
    """Each request travels as a small signed JSON file, like a batch."""
    import hashlib

    folder = config.home.outbox / "withdrawals"
    for req in requests:
        if req.signature_format != "minisign":
            continue
        name = f"withdrawal-{config.site_id}-{req.id:06d}"
        path = folder / f"{name}.json"
        data = req.payload.encode("utf-8")
        atomic_write_bytes(path, data, 0o600)
        atomic_write_text(signature_path(path), req.signature, 0o600)
        try:
            dest.send(path, name, hashlib.sha256(data).hexdigest(), len(data), state)
        except AuthError:
            raise
        except (TransportError, IntegrityError) as exc:
            consent.mark_withdrawal_request(ledger, req.id, "pending", str(exc))
            report.note_failure(name, exc)
            return
        consent.mark_withdrawal_request(ledger, req.id, "sent")
        report.withdrawals_sent += 1


def _announcements(config: Config) -> list[Any]:
    """Signed statements waiting in the outbox (e.g. a signing-key rotation, from ``keys rotate-signing``)."""
    return sorted(p for p in config.home.outbox.glob("signing-key-rotation-*.json") if signature_path(p).exists())


def _send_announcements(config: Config, dest: Any, state: Any, report: UploadReport) -> None:
    """Deliver each announcement like a batch, then move it to ``outbox/sent/``."""
    import hashlib

    for path in _announcements(config):
        data = path.read_bytes()
        try:
            dest.send(path, path.stem, hashlib.sha256(data).hexdigest(), len(data), state)
        except AuthError:
            raise
        except (TransportError, IntegrityError) as exc:
            report.note_failure(path.stem, exc)
            return
        sent = config.home.outbox / "sent"
        sent.mkdir(mode=0o700, exist_ok=True)
        signature_path(path).replace(sent / signature_path(path).name)
        path.replace(sent / path.name)
        report.announcements_sent += 1
