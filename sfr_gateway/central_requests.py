"""The central host's side of withdrawals: check a delivered withdrawal request.

A site delivers each request as ``withdrawal-<site>-<n>.json`` (canonical JSON naming one
pseudonym) with its detached minisign signature ``.json.minisig`` by the site key. Nothing is
trusted before the signature verifies with the site's public key, the trusted comment names the
payload's SHA-256 and the request kind, and the payload is a well-formed request of the site
the comment names. Every failure is an IntegrityError (exit code 12).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from .crypto.sign import PublicKey, Signature, parse_trusted_comment, verify_bytes
from .errors import InputError, IntegrityError
from .package import signature_path

REQUEST_TYPE = "sfr-gateway/withdrawal-request"
MAX_REQUEST_BYTES = 64 * 1024
_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}-[A-Z0-9]{4,32}$")


def open_withdrawal_request(path: Path, site_key: PublicKey, *, signature: Path | None = None) -> dict[str, Any]:
    """Verify a delivered withdrawal request and return its payload (``site``, ``pseudonym``,
    ``request_id``, ``created_at``...). The signature is ``<file>.minisig`` unless given."""
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
    try:
        sig = Signature.parse(sig_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"no signature beside the request ({sig_file.name}): refusing it") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"cannot read signature {sig_file.name}: {exc.__class__.__name__}") from None
    verify_bytes(data, sig, site_key)  # IntegrityError when it does not verify
    comment = sig.trusted_comment.split("\t")
    fields = parse_trusted_comment(sig.trusted_comment)
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
