"""The age v1 file format (age-encryption.org/v1, c2sp.org/age) with X25519 recipients (keys: agekeys.py).

Implemented on ``cryptography`` only, streaming in both directions with bounded memory:

- :class:`Encryptor` is a writable file-like object: ``write()`` plaintext, ``finish()`` once
  at the end. Memory: one 64 KiB chunk. It never finalises on its own (not even when garbage
  collected), so an interrupted stream can never look like a complete, shorter file.
- :class:`Decryptor` is a readable raw stream (``read``/``readinto``) that authenticates the
  header MAC before returning anything and every 64 KiB chunk before returning it. It rejects
  flipped bytes, truncation (also exactly at a chunk boundary), trailing data, an empty final
  chunk after data, and files not addressed to any given identity. It passes the 68 C2SP age
  test vectors (CCTV) that apply to X25519 files (tests/data/cctv-age/README.md).

Format facts (from the specification): a 16-byte random file key is wrapped per recipient in a
``-> X25519 <ephemeral share>`` stanza (HKDF-SHA-256 with salt ``share || recipient`` and info
``age-encryption.org/v1/X25519``, ChaCha20-Poly1305 with a zero nonce); the header ends with
``--- `` and an HMAC-SHA-256 keyed by HKDF(file key, info ``header``); the payload is a 16-byte
nonce then ChaCha20-Poly1305 STREAM chunks keyed by HKDF(file key, salt nonce, info ``payload``)
with the 12-byte nonce ``11-byte big-endian counter || last-chunk flag``.
"""

from __future__ import annotations

import hmac
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import BinaryIO, Protocol, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError, KeyFileError
from .agekeys import (
    Identity,
    Recipient,
    b64decode,
    b64encode,
    identity_file_text,
    parse_identities,
    parse_recipients,
)

VERSION_LINE = b"age-encryption.org/v1\n"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
X25519_INFO = b"age-encryption.org/v1/X25519"
MAX_HEADER_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024
_ZERO_NONCE = bytes(12)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# --------------------------------------------------------------------------- header


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its arguments and its (decoded) body."""

    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        text = b64encode(self.body)
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        if not lines or len(lines[-1]) == 64:
            lines.append("")
        return ("-> " + " ".join(self.args) + "\n" + "\n".join(lines) + "\n").encode("ascii")


def _wrap_for(recipient: Recipient, file_key: bytes) -> Stanza:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.public_key))
    wrap_key = _hkdf(shared, share + recipient.public_key, X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza(("X25519", b64encode(share)), body)


def _unwrap_with(stanza: Stanza, identities: Sequence[Identity]) -> bytes | None:
    """The file key if one identity opens this X25519 stanza, else None (not ours)."""
    if len(stanza.args) != 2:
        raise IntegrityError("age: malformed X25519 stanza (argument count)")
    try:
        share = b64decode(stanza.args[1])
    except ValueError:
        raise IntegrityError("age: malformed X25519 stanza (share encoding)") from None
    if len(share) != 32:
        raise IntegrityError("age: malformed X25519 stanza (share length)")
    if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
        raise IntegrityError("age: malformed X25519 stanza (body length)")
    for identity in identities:
        private = X25519PrivateKey.from_private_bytes(identity.secret)
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:  # all-zero shared secret (low-order point): the spec says abort
            raise IntegrityError("age: X25519 stanza with a low-order share") from None
        if shared == bytes(32):
            raise IntegrityError("age: X25519 stanza with a low-order share")
        salt = share + identity.recipient.public_key
        try:
            return ChaCha20Poly1305(_hkdf(shared, salt, X25519_INFO)).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            continue
    return None


def _header_mac(file_key: bytes, header_upto_dashes: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, None, b"header"), header_upto_dashes, sha256).digest()


# --------------------------------------------------------------------------- encryption


def stream_header(recipients: Iterable[Recipient]) -> tuple[bytes, ChaCha20Poly1305]:
    """A fresh file key wrapped to every recipient: the header (with its MAC and the payload
    nonce) to write first, and the payload's STREAM cipher."""
    recipients = list(recipients)
    if not recipients:
        raise KeyFileError("age: at least one recipient is needed to encrypt")
    file_key = os.urandom(FILE_KEY_SIZE)
    header = VERSION_LINE + b"".join(_wrap_for(r, file_key).encode() for r in recipients) + b"---"
    mac = _header_mac(file_key, header)
    nonce = os.urandom(NONCE_SIZE)
    return header + b" " + b64encode(mac).encode("ascii") + b"\n" + nonce, ChaCha20Poly1305(
        _hkdf(file_key, nonce, b"payload"))


def chunk_nonce(counter: int, last: bool) -> bytes:
    """The STREAM nonce of chunk ``counter``: 11-byte big-endian counter, last-chunk flag."""
    if counter >= 1 << 88:
        raise IntegrityError("age: stream too long")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class ChunkWriter:
    """Writable STREAM payload from chunk ``first`` on: ``write()`` plaintext, ``finish()`` once.

    A chunk is encrypted only once it is known whether more data follows (the last one carries
    the flag); whole chunks go straight from the caller's buffer. Memory: one 64 KiB chunk.
    It never finalises on its own, so an interrupted stream never looks complete.
    Starting after chunk 0 lets a writer leave room for chunks it encrypts later (the batch
    manifest, known only at the end: see ``package.write_batch``).
    """

    def __init__(self, dst: _Writable, aead: ChaCha20Poly1305, first: int = 0) -> None:
        self._dst = dst
        self._aead = aead
        self._counter = first
        self._buf = bytearray()
        self._finished = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0

    def _emit(self, chunk: bytes | bytearray | memoryview, last: bool) -> None:
        sealed = self._aead.encrypt(chunk_nonce(self._counter, last), chunk, None)
        self._dst.write(sealed)
        self.ciphertext_bytes += len(sealed)
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt ``data`` (in whole 64 KiB chunks); return its length."""
        if self._finished:
            raise ValueError("age: write after finish")
        view = memoryview(data).cast("B")
        pos, size = 0, len(view)
        while pos < size:
            if len(self._buf) == CHUNK_SIZE:  # more data follows: this chunk is not the last
                self._emit(self._buf, last=False)
                self._buf = bytearray()
            if not self._buf and size - pos > CHUNK_SIZE:  # a whole chunk, and more after it
                self._emit(view[pos : pos + CHUNK_SIZE], last=False)
                pos += CHUNK_SIZE
                continue
            take = min(CHUNK_SIZE - len(self._buf), size - pos)
            self._buf += view[pos : pos + take]
            pos += take
        self.plaintext_bytes += size
        return size

    def flush(self) -> None:
        """Nothing to do: a chunk is written only when it is known not to be the last."""

    def finish(self) -> None:
        """Write the final chunk. Idempotent."""
        if not self._finished:
            self._emit(self._buf, last=True)
            self._finished = True

    def end_region(self) -> None:
        """Emit the buffered data as a non-final chunk: the stream goes on in chunks written by
        another writer (from :attr:`next_counter` on). The region must be whole chunks."""
        if self._buf:
            if len(self._buf) != CHUNK_SIZE:
                raise ValueError("age: a region ends on a chunk boundary")
            self._emit(self._buf, last=False)
            self._buf = bytearray()
        self._finished = True

    @property
    def next_counter(self) -> int:
        return self._counter


class Encryptor(ChunkWriter):
    """Writable age stream: ``write()`` plaintext into ``dst``, then call ``finish()`` once.

    Use as a context manager: the stream is finished only when the block exits without an
    exception, so a failed producer never yields a valid (shorter) ciphertext.
    """

    def __init__(self, dst: _Writable, recipients: Iterable[Recipient]) -> None:
        header, aead = stream_header(recipients)
        dst.write(header)
        super().__init__(dst, aead)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.finish()


def encrypt_stream(
    src: BinaryIO | _Readable | Iterable[bytes], dst: _Writable, recipients: Iterable[Recipient]
) -> int:
    """Encrypt everything read from ``src`` (a binary stream or an iterable of bytes) into ``dst``.

    Returns the number of plaintext bytes.
    """
    with Encryptor(dst, recipients) as enc:
        if hasattr(src, "read"):
            while block := src.read(CHUNK_SIZE):  # type: ignore[union-attr]
                enc.write(block)
        else:
            for block in src:  # type: ignore[union-attr]
                enc.write(block)
    return enc.plaintext_bytes


def encrypt_bytes(data: bytes, recipients: Iterable[Recipient]) -> bytes:
    """Encrypt a small in-memory message (tests, key escrow)."""
    out = io.BytesIO()
    with Encryptor(out, recipients) as enc:
        enc.write(data)
    return out.getvalue()


# --------------------------------------------------------------------------- decryption


class _Source:
    """Buffered exact reads and bounded line reads over any ``read(n)`` source."""

    def __init__(self, src: _Readable) -> None:
        self._src = src
        self._buf = bytearray()
        self._eof = False

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            block = self._src.read(max(n - len(self._buf), CHUNK_SIZE))
            if not block:
                self._eof = True
            else:
                self._buf += block

    def readline(self, limit: int) -> bytes:
        start = 0
        while True:
            idx = self._buf.find(b"\n", start)
            if idx >= 0:
                line = bytes(self._buf[: idx + 1])
                del self._buf[: idx + 1]
                return line
            if len(self._buf) > limit or self._eof:
                raise IntegrityError("age: malformed header (line too long or truncated)")
            start = len(self._buf)
            self._fill(len(self._buf) + 1)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at end of input."""
        self._fill(n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def at_eof(self) -> bool:
        self._fill(1)
        return not self._buf


def _parse_header(source: _Source) -> tuple[list[Stanza], bytes, bytes]:
    """Return (stanzas, header bytes up to and including ``---``, MAC)."""
    raw = bytearray()
    line = source.readline(MAX_LINE_BYTES)
    if line != VERSION_LINE:
        raise IntegrityError("age: not an age v1 file (bad version line)")
    raw += line
    stanzas: list[Stanza] = []
    line = source.readline(MAX_LINE_BYTES)
    while line.startswith(b"-> "):
        raw += line
        args = line[3:-1].split(b" ")
        if not args or any(not a or any(c < 0x21 or c > 0x7E for c in a) for a in args):
            raise IntegrityError("age: malformed stanza arguments")
        body = b""
        while True:
            bline = source.readline(MAX_LINE_BYTES)
            raw += bline
            if len(raw) > MAX_HEADER_BYTES:
                raise IntegrityError("age: header too large")
            text = bline[:-1]
            if len(text) > 64:
                raise IntegrityError("age: malformed stanza body (line longer than 64 columns)")
            body += text
            if len(text) < 64:
                break
        try:
            decoded = b64decode(body)
        except ValueError:
            raise IntegrityError("age: malformed stanza body (base64)") from None
        stanzas.append(Stanza(tuple(a.decode("ascii") for a in args), decoded))
        line = source.readline(MAX_LINE_BYTES)
    if not stanzas:
        raise IntegrityError("age: header has no recipient stanza")
    if not line.startswith(b"--- ") or not line.endswith(b"\n"):
        raise IntegrityError("age: malformed header (missing MAC line)")
    raw += b"---"
    try:
        mac = b64decode(line[4:-1])
    except ValueError:
        raise IntegrityError("age: malformed header MAC") from None
    if len(mac) != 32:
        raise IntegrityError("age: malformed header MAC")
    return stanzas, bytes(raw), mac


class Decryptor(io.RawIOBase):
    """Readable plaintext stream of an age file; every byte returned has been authenticated.

    Raises IntegrityError (from the constructor for header problems, from ``read`` for
    payload problems). The caller must read to EOF: only then is the final chunk verified.
    """

    def __init__(self, src: _Readable, identities: Sequence[Identity]) -> None:
        super().__init__()
        if not identities:
            raise KeyFileError("age: at least one identity is needed to decrypt")
        self._src = _Source(src)
        stanzas, header, mac = _parse_header(self._src)
        if len(stanzas) > 1 and any(st.args[0] == "scrypt" for st in stanzas):
            raise IntegrityError("age: an scrypt stanza must be the only one in the header")
        file_key = None
        for stanza in stanzas:
            if stanza.args[0] != "X25519":
                continue  # other recipient types (and grease) are ignored
            file_key = _unwrap_with(stanza, identities)
            if file_key is not None:
                break
        if file_key is None:
            raise IntegrityError("age: no identity matches this file (wrong recipient?)")
        if not hmac.compare_digest(_header_mac(file_key, header), mac):
            raise IntegrityError("age: header MAC mismatch (header altered)")
        nonce = self._src.read(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise IntegrityError("age: truncated payload (no nonce)")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._plain = b""
        self._pos = 0
        self._done = False
        self._trailing = False

    def readable(self) -> bool:
        return True

    def _open(self, block: bytes, last: bool) -> bytes | None:
        try:
            return self._aead.decrypt(chunk_nonce(self._counter, last), block, None)
        except InvalidTag:
            return None

    def _next_chunk(self) -> None:
        """Authenticate the next chunk. A full-size chunk is first tried as a middle chunk, then
        as the final one (a file may end on a full chunk), as the reference implementation does;
        a final chunk's plaintext is released before trailing data is reported (CCTV vectors)."""
        if self._trailing:
            raise IntegrityError("age: data after the final chunk (trailing garbage or a second final chunk)")
        block = self._src.read(CHUNK_SIZE + TAG_SIZE)
        if len(block) < TAG_SIZE:
            raise IntegrityError("age: truncated payload (the final chunk is missing)")
        last = len(block) < CHUNK_SIZE + TAG_SIZE
        plain = None if last else self._open(block, last=False)
        if plain is None:
            last = True
            plain = self._open(block, last=True)
        if plain is None:
            if len(block) < CHUNK_SIZE + TAG_SIZE or self._src.at_eof():
                raise IntegrityError("age: payload altered or truncated (final chunk does not verify)")
            raise IntegrityError(f"age: payload altered (chunk {self._counter} does not verify)")
        if last and not plain and self._counter > 0:
            raise IntegrityError("age: empty final chunk after data (not allowed)")
        self._counter += 1
        self._trailing = last and not self._src.at_eof()  # reported once this chunk is read
        self._plain, self._pos, self._done = plain, 0, last and not self._trailing

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        while self._pos >= len(self._plain):
            if self._done:
                return 0
            self._next_chunk()
        n = min(len(view), len(self._plain) - self._pos)
        view[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n


def decrypt_stream(src: _Readable, dst: _Writable, identities: Sequence[Identity]) -> int:
    """Decrypt ``src`` into ``dst``; return the plaintext length. Raise IntegrityError on tampering.

    Bytes written before an error are unauthenticated as a whole: discard ``dst`` on error.
    """
    dec = Decryptor(src, identities)
    total = 0
    while block := dec.read(CHUNK_SIZE):
        dst.write(block)
        total += len(block)
    return total


def decrypt_bytes(data: bytes, identities: Sequence[Identity]) -> bytes:
    """Decrypt a small in-memory age file."""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, identities)
    return out.getvalue()


__all__ = [
    "CHUNK_SIZE",
    "Decryptor",
    "Encryptor",
    "Identity",
    "Recipient",
    "Stanza",
    "b64decode",
    "b64encode",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "identity_file_text",
    "parse_identities",
    "parse_recipients",
]
