"""The central host's side of withdrawals: check a delivered withdrawal request.

A site delivers each request as ``withdrawal-<site>-<n>.json`` (canonical JSON naming one
pseudonym) with its detached minisign signature ``.json.minisig`` by the site key. Nothing is
trusted before the signature verifies with the key registered for the site it names (the site
registry, as for batches), the trusted comment names the payload's SHA-256 and the request kind,
and the payload is a well-formed request of that site. Every failure is an IntegrityError (exit
code 12).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..batch.names import signature_path
from ..crypto.sign import ALG_PREHASHED, PublicKey, parse_trusted_comment, verify_bytes
from ..errors import InputError, IntegrityError
from .opener import as_registry, read_signature, site_key
from .sites import SiteRegistry

REQUEST_TYPE = "sfr-gateway/withdrawal-request"
MAX_REQUEST_BYTES = 64 * 1024
_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}-[A-Z0-9]{4,32}$")


def open_withdrawal_request(path: Path, sites: SiteRegistry | Mapping[str, PublicKey | Sequence[PublicKey]], *,
                            signature: Path | None = None) -> dict[str, Any]:
    """Verify a delivered withdrawal request and return its payload (``site``, ``pseudonym``,
    ``request_id``, ``created_at``...). ``sites``: the registry (or ``{site: key}``); the
    signature is ``<file>.minisig`` unless given."""
    path = Path(path)
    sig_file = Path(signature) if signature else signature_path(path)
    try:
        if path.stat().st_size > MAX_REQUEST_BYTES:
            raise IntegrityError(f"{path.name}: too large for a withdrawal request")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no withdrawal request at {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    sig = read_signature(sig_file)
    if sig.algorithm != ALG_PREHASHED:
        raise IntegrityError("signature: legacy minisign (Ed) signature refused: sites sign prehashed (ED)")
    fields = parse_trusted_comment(sig.trusted_comment)  # not trusted yet: it only chooses the key
    verify_bytes(data, sig, site_key(sig, fields.get("site", ""), as_registry(sites)))  # IntegrityError if not
    comment = sig.trusted_comment.split("\t")
    if "withdrawal-request" not in comment or fields.get("sha256") != hashlib.sha256(data).hexdigest():
        raise IntegrityError("signature: the trusted comment does not name this withdrawal request")
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError("withdrawal request: not valid JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != REQUEST_TYPE or payload.get("version") != 1:
        raise IntegrityError("withdrawal request: not a version 1 sfr-gateway withdrawal request")
    if payload.get("site") != fields.get("site"):
        raise IntegrityError("withdrawal request: the site differs from the signed trusted comment")
    pseudonym = payload.get("pseudonym")
    if not isinstance(pseudonym, str) or not _PSEUDONYM.match(pseudonym) or \
            not pseudonym.startswith(f"{payload['site']}-"):
        raise IntegrityError("withdrawal request: malformed pseudonym")
    return dict(payload)


__all__ = ["open_withdrawal_request"]
