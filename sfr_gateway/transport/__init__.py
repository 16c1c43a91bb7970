"""Destinations for encrypted, signed batches: a drop folder (``file://``) or a tus 1.0 server."""

from .base import (
    DATA,
    SIGNATURE,
    Destination,
    Receipt,
    TransportSettings,
    UploadState,
    redact_url,
    signature_path,
)
from .registry import destination_for

__all__ = [
    "DATA",
    "SIGNATURE",
    "Destination",
    "Receipt",
    "TransportSettings",
    "UploadState",
    "destination_for",
    "redact_url",
    "signature_path",
]
