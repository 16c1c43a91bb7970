"""One association with the PACS for ``pull``: C-FIND, C-MOVE, C-GET, with the failures named.

Every way the PACS can fail us becomes one of two errors: ``DicomRefusedError`` when it refused
(association rejected, move destination unknown: a PACS administrator must act) and
``DicomNetError`` when it could not be reached, did not answer within the timeout, or dropped the
association. Sub-operation counts of a retrieval are returned as the PACS reported them.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from ..errors import ConfigError, DicomNetError, DicomRefusedError
from ..home.config import PacsSettings
from . import statuses

log = logging.getLogger(__name__)

_config.LOG_REQUEST_IDENTIFIERS = False  # identifiers carry patient IDs: never logged
_config.LOG_RESPONSE_IDENTIFIERS = False
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_REJECT_REASONS = {
    (1, 2): "the PACS does not know our calling AE title",
    (1, 3): "the PACS does not know our calling AE title",
    (1, 7): "the PACS does not answer to that called AE title",
}


@dataclass
class Retrieval:
    """The outcome of one C-MOVE or C-GET: the final status and sub-operation counts."""

    status: int | None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    error: str | None = None
    started: float = 0.0

    @property
    def state(self) -> str:
        if self.status is not None and self.status in (statuses.SUCCESS, statuses.SUBOPS_WARNING) \
                and self.failed == 0 and self.remaining == 0:
            return "complete"
        return "partial" if self.completed else "failed"


class Pacs:
    """An open association with the configured PACS (a context manager)."""

    def __init__(self, settings: PacsSettings, calling_ae: str, *, method: str,
                 storage_classes: frozenset[str] = frozenset(), on_store: Callable[[Any], Any] | None = None) -> None:
        if not settings.host or not settings.called_ae:
            raise ConfigError("no PACS configured: set [pacs] host, port and called_ae in config.toml")
        self.settings = settings
        self.calling_ae = calling_ae
        self.method = method
        self.where = f"{settings.called_ae}@{settings.host}:{settings.port}"
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_seconds
        ae.connection_timeout = settings.timeout_seconds
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        roles: list[Any] = []
        if method == "move":
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        else:
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
            for uid in sorted(storage_classes)[:100]:  # 128 contexts at most in one association
                ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
                roles.append(build_role(uid, scp_role=True))
        self._ae = ae
        self._roles = roles
        self._handlers: list[Any] = [(evt.EVT_C_STORE, on_store)] if on_store else []
        self.assoc: Any = None
        self._answered = False  # has the PACS answered a request on this association yet?

    def __enter__(self) -> Pacs:
        s = self.settings
        tls = None
        if s.tls:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.tls_ca or None)
            if s.tls_certificate:
                ctx.load_cert_chain(s.tls_certificate, s.tls_key or None)
            tls = (ctx, s.host)
        assoc = self._ae.associate(s.host, s.port, ae_title=s.called_ae, ext_neg=self._roles or None,
                                   evt_handlers=self._handlers or None, tls_args=tls)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise DicomRefusedError(f"the PACS {self.where} rejected the association: {self._rejection(assoc)}; "
                                        f"ask its administrator to register AE title {self.calling_ae}")
            raise DicomNetError(f"no association with the PACS {self.where}: {self._diagnose()}; "
                                "nothing was retrieved, the next pull tries again")
        self.assoc = assoc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self._ae.shutdown()

    def _rejection(self, assoc: Any) -> str:
        rsp = getattr(assoc.acceptor, "primitive", None)
        key = (getattr(rsp, "result_source", None), getattr(rsp, "diagnostic", None))
        return _REJECT_REASONS.get(key, f"result source {key[0]}, diagnostic {key[1]}")  # type: ignore[arg-type]

    def _diagnose(self) -> str:
        s = self.settings
        try:
            with socket.create_connection((s.host, s.port), timeout=min(5, s.timeout_seconds)):
                pass
        except ConnectionRefusedError:
            return f"nothing listens on {s.host}:{s.port} (connection refused)"
        except OSError as exc:
            return f"cannot connect to {s.host}:{s.port} ({exc.strerror or exc})"
        return f"it did not answer the association request within {s.timeout_seconds} s (PACS too slow or hung?)"

    def lost(self, what: str, started: float | None = None) -> DicomNetError:
        quick = started is not None and time.monotonic() - started < 0.8 * self.settings.timeout_seconds
        if quick and not self._answered:
            return DicomRefusedError(f"the PACS {self.where} ended the association at our first request ({what}): "
                                     f"it does not accept requests from AE title {self.calling_ae} (register it, "
                                     "with this host's address, in the PACS, or set [pacs] calling_ae)")
        if quick:
            return DicomNetError(f"the PACS {self.where} dropped the association during {what}; "
                                 "the next pull resumes")
        return DicomNetError(f"the PACS {self.where} dropped the association or did not answer within "
                             f"{self.settings.timeout_seconds} s during {what}; the next pull resumes")

    def find(self, query: Dataset, what: str) -> list[Dataset]:
        """The matches of one C-FIND (Study Root); a failure status gives ``[]`` for series queries
        (a PACS may not support that level) and an error otherwise."""
        out = []
        started = time.monotonic()
        for status, identifier in self.assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            code = getattr(status, "Status", None)
            if code is None:
                raise self.lost(what, started)
            self._answered = True
            if statuses.is_pending(code):
                if identifier is not None:
                    out.append(identifier)
                continue
            if code != statuses.SUCCESS:
                if query.QueryRetrieveLevel == "SERIES":
                    log.info("the PACS answered a series query with status 0x%04X: judging whole studies", code)
                    return []
                raise DicomNetError(f"the PACS {self.where} failed {what}: status 0x{code:04X} "
                                    f"({statuses.describe(code)})")
        return out

    def retrieve(self, identifier: Dataset, destination: str) -> Retrieval:
        """C-MOVE to ``destination`` or C-GET on this association; counts of the last response."""
        if self.method == "move":
            responses = self.assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove)
        else:
            responses = self.assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        result = Retrieval(status=None)
        result.started = time.monotonic()
        for status, _ in responses:
            code = getattr(status, "Status", None)
            if code is None:
                result.status = None
                result.error = "association dropped or no answer within the timeout"
                return result
            self._answered = True
            result.status = int(code)
            result.completed = int(status.get("NumberOfCompletedSuboperations", result.completed) or 0)
            result.failed = int(status.get("NumberOfFailedSuboperations", result.failed) or 0)
            result.warning = int(status.get("NumberOfWarningSuboperations", result.warning) or 0)
            result.remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0) \
                if statuses.is_pending(code) else 0
            if not statuses.is_pending(code) and code not in (statuses.SUCCESS, statuses.SUBOPS_WARNING):
                comment = str(status.get("ErrorComment", "") or "")
                result.error = f"status 0x{code:04X} ({statuses.describe(code)})" + (f": {comment}" if comment else "")
        return result
