"""What a refusal or withdrawal does beyond its record: stop what has not left, say what has,
and queue signed withdrawal requests for the central host.

A withdrawal cancels the batches not yet delivered of every study it covers and queues one
request per pseudonym: each identity it covers (``consent.identity.Registry.restriction_targets``)
and every pseudonym a batch of those identities was made under (the pseudonyms that actually
left, even under an earlier secret). A refusal recorded after data left is a withdrawal in
effect for what left: it queues the same requests; batches not yet sent are held by the upload's
consent check (a later consent may release them). Both report the batches that already left.

A request is queued for a pseudonym unless one for it was made after its last batch, so
repeating a withdrawal queues nothing, and a patient released again after an earlier request
gets a new one. Requests name only a pseudonym (canonical JSON, signed by the site key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..crypto.signkey import SigningKey
from ..errors import ConsentError
from ..ledger import consent as sql
from ..ledger.db import utcnow
from .identity import SCOPE_ALL, Registry

log = logging.getLogger(__name__)

PseudonymFor = Callable[[str, str], str]
"""``pseudonym_for(patient_id, issuer) -> pseudonym`` (from the de-identification engine)."""
Signer = Callable[[bytes], tuple[str, str]]
"""``sign(payload) -> (signature_format, signature_text)``."""
CancelBatches = Callable[[Any, str, "str | None"], int]
"""``cancel(conn, patient_id, issuer or None for every issuer) -> batches cancelled``, run inside
the withdrawal transaction."""


def minisign_signer(key: SigningKey, site_id: str) -> Signer:
    """Sign with the site key in minisign format (``ED``, BLAKE2b-prehashed): ``minisign -V`` and
    ``sfr_gateway.crypto.sign.verify_bytes`` check it with the site's public key. The trusted
    comment names the site and the payload's SHA-256."""
    from ..crypto.sign import sign_bytes

    def sign(payload: bytes) -> tuple[str, str]:
        comment = f"site:{site_id}\twithdrawal-request\tsha256:{hashlib.sha256(payload).hexdigest()}"
        return "minisign", sign_bytes(payload, key, comment)

    return sign


@dataclass(frozen=True)
class Withdrawer:
    """What a withdrawal needs besides the ledger: the site, the pseudonym and the signature."""

    site_id: str
    pseudonym_for: PseudonymFor
    signer: Signer
    cancel_batches: CancelBatches = sql.cancel_pending_batches


def canonical_json(obj: dict[str, Any]) -> str:
    """Sorted keys, no spaces, ASCII: the exact bytes that are signed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Stopped:
    """What a refusal or withdrawal did besides its record (batch IDs and counts only)."""

    batches_cancelled: int = 0
    requests_queued: int = 0
    released_batches: tuple[str, ...] = ()
    released_studies: int = 0


def queue_request(conn: Any, withdrawer: Withdrawer, pseudonym: str) -> bool:
    """Sign and queue a request naming ``pseudonym``, unless one already covers it."""
    if not sql.needs_request(conn, pseudonym):
        return False
    created = utcnow()
    payload = canonical_json({
        "type": "sfr-gateway/withdrawal-request", "version": 1, "site": withdrawer.site_id,
        "pseudonym": pseudonym, "request_id": uuid.uuid4().hex, "created_at": created,
    })
    fmt, signature = withdrawer.signer(payload.encode("utf-8"))
    return sql.queue_withdrawal_request(conn, pseudonym, created, payload, signature, fmt)


def restrict(conn: Any, reg: Registry, patient_id: str, issuer: str, status: str, scope: str,
             withdrawer: Withdrawer | None) -> Stopped:
    """Inside the transaction that records a refusal or withdrawal (``scope`` as recorded)."""
    who = None if scope == SCOPE_ALL else issuer  # None: the Patient ID under every issuer
    left = sql.released_batches(conn, patient_id, who)
    cancelled = 0
    if status == "withdrawn":
        if withdrawer is None:
            raise ConsentError("recording a withdrawal needs the pseudonym secret and the site signing key")
        cancelled = withdrawer.cancel_batches(conn, patient_id, who)
    queued = 0
    if status == "withdrawn" or left:
        if withdrawer is None:
            raise ConsentError("this patient's data already left the site: recording the refusal queues a signed "
                               "withdrawal request, which needs the pseudonym secret and the site signing key")
        pseudonyms = {withdrawer.pseudonym_for(p, i) for p, i in reg.restriction_targets(patient_id, issuer, scope)}
        pseudonyms |= set(sql.batch_pseudonyms(conn, patient_id, who))
        queued = sum(queue_request(conn, withdrawer, p) for p in sorted(pseudonyms))
    if left:
        log.warning("%s recorded for a patient whose data already left: %d batch(es) of %d study(ies); "
                    "%d withdrawal request(s) queued", status, len(left), len({b.study_uid for b in left}), queued)
    return Stopped(cancelled, queued, tuple(b.batch_id for b in left), len({b.study_uid for b in left}))
