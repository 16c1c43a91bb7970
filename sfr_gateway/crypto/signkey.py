"""The site's signing key in memory, and the minisign facts derived from its public half.

Apart from ``crypto.sign`` (which reads, writes and uses keys) so that ``keys/`` can make and
load the key without importing the signature code, and so that ``cryptography`` is imported
only where a key is made or used: ``deidentify`` needs only the pseudonym secret.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """The site's Ed25519 signing key and its minisign key id."""

    private: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        """8 bytes naming the key (minisign key id), derived from the public key."""
        return key_id_for(self.public_bytes)

    def minisign_public(self) -> str:
        """The public key as a minisign public-key file."""
        return minisign_public_text(self.public_bytes)


def key_id_for(public: bytes) -> bytes:
    return hashlib.blake2b(public, digest_size=8).digest()


def minisign_public_text(public: bytes) -> str:
    kid = key_id_for(public)
    blob = base64.b64encode(b"Ed" + kid + public).decode("ascii")
    return f"untrusted comment: minisign public key {kid[::-1].hex().upper()}\n{blob}\n"
