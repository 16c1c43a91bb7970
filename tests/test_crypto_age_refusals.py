"""Every refusal of the age decryption side, with its exact message.

``central open`` reports these messages (and the audit log keeps them): each names its cause, so
an operator can tell a file addressed to another key from a truncated upload or an altered one.
Issue 21's mutation campaign over ``crypto/age`` found them checked only loosely; the hand-built
files below reach each check once (the C2SP vectors in test_crypto_cctv.py check the outcomes).
"""

from __future__ import annotations

import re

import pytest

from sfr_gateway.crypto import age
from sfr_gateway.errors import IntegrityError, KeyFileError

ID = age.Identity.generate()
OTHER = age.Identity.generate()
FILE_KEY = bytes(range(16))
GOOD = age._wrap_for(ID.recipient, FILE_KEY)
CHUNK = age.CHUNK_SIZE


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def header(stanzas: list[age.Stanza], file_key: bytes = FILE_KEY, raw: bytes | None = None) -> bytes:
    """A header whose MAC is right for ``file_key`` (``raw``: the lines before ``---``, as given)."""
    head = (raw if raw is not None else age.VERSION_LINE + b"".join(s.encode() for s in stanzas)) + b"---"
    return head + b" " + age.b64encode(age._header_mac(file_key, head)).encode() + b"\n"


def payload(chunks: list[tuple[bytes, bool]], file_key: bytes = FILE_KEY, nonce: bytes = bytes(16)) -> bytes:
    """The nonce then the STREAM chunks (plaintext, last flag), in order from counter 0."""
    aead = age.ChaCha20Poly1305(age._hkdf(file_key, nonce, b"payload"))
    return nonce + b"".join(aead.encrypt(age.chunk_nonce(i, last), data, None) for i, (data, last) in enumerate(chunks))


def refused(data: bytes, message: str, identities: tuple[age.Identity, ...] = (ID,)) -> None:
    with pytest.raises(IntegrityError, match=exactly(message)):
        age.decrypt_bytes(data, list(identities))


def test_the_hand_built_file_decrypts() -> None:
    """The builder is right: the refusals below differ from this file in one thing each."""
    assert age.decrypt_bytes(header([GOOD]) + payload([(b"hello", True)]), [ID]) == b"hello"
    two = payload([(bytes(CHUNK), False), (b"end", True)])
    assert age.decrypt_bytes(header([GOOD]) + two, [ID]) == bytes(CHUNK) + b"end"


def test_header_refusals() -> None:
    body = payload([(b"x", True)])
    refused(b"age-encryption.org/v2\n" + header([GOOD])[len(age.VERSION_LINE):] + body,
            "age: not an age v1 file (bad version line)")
    refused(b"age-encryption.org/v1", "age: malformed header (line too long or truncated)")
    refused(age.VERSION_LINE + b"-> X25519 " + b"A" * 70_000, "age: malformed header (line too long or truncated)")
    for args in (b"-> X25519  abc\n", b"-> \n", b"-> X25519 a\x7fb\n", b"-> X25519 a\x20\n", b"-> X\x19 a\n"):
        refused(age.VERSION_LINE + args + b"\n--- AAAA\n", "age: malformed stanza arguments")
    grease = [age.Stanza(("grease", str(i)), bytes(48 * 20)) for i in range(60)]  # 60 x ~1.3 KiB
    refused(header(grease + [GOOD]) + body, "age: header too large")
    refused(header([], raw=age.VERSION_LINE + b"-> grease\n" + b"A" * 65 + b"\n\n") + body,
            "age: malformed stanza body (line longer than 64 columns)")
    refused(header([], raw=age.VERSION_LINE + b"-> grease\n!!!!\n") + body, "age: malformed stanza body (base64)")
    refused(header([]) + body, "age: header has no recipient stanza")
    refused(age.VERSION_LINE + GOOD.encode() + b"---\n" + body, "age: malformed header (missing MAC line)")
    refused(age.VERSION_LINE + GOOD.encode() + b"junk\n" + body, "age: malformed header (missing MAC line)")
    refused(age.VERSION_LINE + GOOD.encode() + b"--- !!!!\n" + body, "age: malformed header MAC")
    refused(age.VERSION_LINE + GOOD.encode() + b"--- " + age.b64encode(bytes(31)).encode() + b"\n" + body,
            "age: malformed header MAC")
    refused(age.VERSION_LINE + GOOD.encode() + b"--- " + age.b64encode(bytes(33)).encode() + b"\n" + body,
            "age: malformed header MAC")
    scrypt = age.Stanza(("scrypt", "AAAAAAAAAAAAAAAAAAAAAA", "10"), bytes(32))
    refused(header([scrypt, GOOD]) + body, "age: an scrypt stanza must be the only one in the header")
    refused(header([GOOD]) + body, "age: no identity matches this file (wrong recipient?)", (OTHER,))
    refused(header([GOOD], file_key=bytes(16)) + body, "age: header MAC mismatch (header altered)")
    refused(header([GOOD]) + bytes(15), "age: truncated payload (no nonce)")
    with pytest.raises(KeyFileError, match=exactly("age: at least one identity is needed to decrypt")):
        age.decrypt_bytes(header([GOOD]) + body, [])


def test_x25519_stanza_refusals() -> None:
    body = payload([(b"x", True)])
    share = GOOD.args[1]
    cases = {
        "age: malformed X25519 stanza (argument count)": [age.Stanza(("X25519",), GOOD.body),
                                                           age.Stanza(("X25519", share, "x"), GOOD.body)],
        "age: malformed X25519 stanza (share encoding)": [age.Stanza(("X25519", share + "="), GOOD.body),
                                                           age.Stanza(("X25519", share[:-1] + "!"), GOOD.body)],
        "age: malformed X25519 stanza (share length)": [age.Stanza(("X25519", age.b64encode(bytes(31))), GOOD.body),
                                                         age.Stanza(("X25519", age.b64encode(bytes(33))), GOOD.body)],
        "age: malformed X25519 stanza (body length)": [age.Stanza(GOOD.args, GOOD.body[:-1]),
                                                        age.Stanza(GOOD.args, GOOD.body + b"\0")],
        "age: X25519 stanza with a low-order share": [age.Stanza(("X25519", age.b64encode(bytes(32))), GOOD.body)],
    }
    for message, stanzas in cases.items():
        for stanza in stanzas:
            refused(header([stanza]) + body, message)


def test_the_right_identity_opens_the_right_stanza_in_any_order() -> None:
    """An identity that does not open a stanza is no error: the next identity (or the next
    stanza) is tried. A site's identity file may hold an old key first."""
    data = header([age._wrap_for(OTHER.recipient, FILE_KEY), GOOD]) + payload([(b"x", True)])
    assert age.decrypt_bytes(data, [ID]) == b"x"
    assert age.decrypt_bytes(data, [OTHER]) == b"x"
    alone = header([GOOD]) + payload([(b"x", True)])
    assert age.decrypt_bytes(alone, [OTHER, ID]) == b"x"
    assert age.decrypt_bytes(alone, [age.Identity.generate(), age.Identity.generate(), ID]) == b"x"


def test_payload_refusals() -> None:
    head = header([GOOD])
    full = payload([(bytes(CHUNK), False), (bytes(CHUNK), False), (b"end", True)])
    # after a short final chunk, extra bytes are part of it (it does not verify); after a full-size
    # final chunk they are trailing data, reported once the final chunk's plaintext was read
    refused(head + full + b"x", "age: payload altered or truncated (final chunk does not verify)")
    refused(head + payload([(bytes(CHUNK), True)]) + b"x",
            "age: data after the final chunk (trailing garbage or a second final chunk)")
    refused(head + payload([(bytes(CHUNK), True), (b"y", True)]),
            "age: data after the final chunk (trailing garbage or a second final chunk)")
    refused(head + bytes(16), "age: truncated payload (the final chunk is missing)")
    refused(head + bytes(16) + bytes(15), "age: truncated payload (the final chunk is missing)")
    refused(head + full[:-1], "age: payload altered or truncated (final chunk does not verify)")
    first_end = 16 + CHUNK + age.TAG_SIZE
    refused(head + full[:first_end], "age: truncated payload (the final chunk is missing)")  # cut at a boundary
    cut_flipped = full[: first_end - 1] + bytes([full[first_end - 1] ^ 1])  # a full-size chunk, nothing after it
    refused(head + cut_flipped, "age: payload altered or truncated (final chunk does not verify)")
    for index in (0, 1):  # a flipped byte in a middle chunk, more data after it
        where = 16 + index * (CHUNK + age.TAG_SIZE) + 5
        flipped = full[:where] + bytes([full[where] ^ 1]) + full[where + 1 :]
        refused(head + flipped, f"age: payload altered (chunk {index} does not verify)")
    refused(head + payload([(bytes(CHUNK), False), (b"", True)]), "age: empty final chunk after data (not allowed)")
    assert age.decrypt_bytes(head + payload([(b"", True)]), [ID]) == b""  # an empty file is one empty chunk


def test_chunk_counter_limit() -> None:
    assert age.chunk_nonce((1 << 88) - 1, True) == b"\xff" * 11 + b"\x01"
    assert age.chunk_nonce(1, False) == bytes(10) + b"\x01\x00"
    with pytest.raises(IntegrityError, match=exactly("age: stream too long")):
        age.chunk_nonce(1 << 88, False)


def test_key_and_base64_refusals() -> None:
    with pytest.raises(KeyFileError, match=exactly("age identity: a secret key is 32 bytes")):
        age.Identity(bytes(31))
    key = ID.to_string()
    wrong_checksum = key[:-1] + ("Q" if key[-1] != "Q" else "P")  # another last character, whatever the key
    for text in ("AGE-SECRET-KEY-1", key.lower(), wrong_checksum, str(ID.recipient)):
        with pytest.raises(KeyFileError, match=exactly("not an age X25519 identity (AGE-SECRET-KEY-1...)")):
            age.Identity.parse(text)
    assert age.Identity.parse(f"  {ID.to_string()}\n") == ID
    with pytest.raises(KeyFileError, match=exactly("identity file holds no AGE-SECRET-KEY-1... line")):
        age.parse_identities("# created: now\n\n# public key: age1...\n")
    assert age.parse_identities(f"# a comment\n\n  {ID.to_string()}  \n{OTHER.to_string()}\n") == [ID, OTHER]
    cases = {"not base64": ["@@@@", b"\xff\xfe"], "padded or multi-line base64": ["AA==", "AA\nAA", "AA\rAA"],
             "non-canonical base64": ["AB"]}
    for message, texts in cases.items():
        for text in texts:
            with pytest.raises(ValueError, match=exactly(message)):
                age.b64decode(text)
    assert age.b64decode(b"AAEC") == b"\x00\x01\x02"


class Pipe:
    """A source that returns at most 4 KiB per read, as a pipe or a socket does."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        block, self._data = self._data[:4096], self._data[4096:]
        return bytes(block)


def test_a_header_line_is_refused_once_more_than_8_kib_of_it_is_buffered() -> None:
    """From a source of short reads the header's lines are read 4 KiB at a time: a line whose end
    is not seen after 8 KiB (MAX_LINE_BYTES) buffered is refused; at 8 KiB it is read on."""
    def file_with_line(length: int) -> bytes:
        align = b"-> grease " + b"a" * (4096 - len(age.VERSION_LINE) - 12) + b"\n\n"  # the next line at 4096
        long = b"-> grease " + b"b" * (length - 10) + b"\n\n"
        raw = age.VERSION_LINE + align + long + GOOD.encode()
        assert len(age.VERSION_LINE + align) == 4096
        return header([], raw=raw) + payload([(b"x", True)])

    for length in (8192, 9000, 12287):  # its end arrives with the read after 8 KiB
        dec = age.Decryptor(Pipe(file_with_line(length)), [ID])
        assert dec.read() == b"x"
    with pytest.raises(IntegrityError, match=exactly("age: malformed header (line too long or truncated)")):
        age.Decryptor(Pipe(file_with_line(12288)), [ID])


def test_a_header_of_64_kib_is_read_and_one_byte_more_is_refused() -> None:
    """MAX_HEADER_BYTES bounds the header (version line to the last stanza body line): exactly
    64 KiB is accepted."""
    def file_with_header(size: int) -> bytes:
        head = age.VERSION_LINE + GOOD.encode()
        for arg in range(1, 64):  # a grease stanza with a body of 64-column lines of "A" (zero bytes)
            stanza_line = b"-> grease " + b"c" * arg + b"\n"
            rest = size - len(head) - len(stanza_line)
            full_lines, last = divmod(rest, 65)
            if last >= 1 and (last - 1) % 4 != 1 and last - 1 < 64:
                body = b"A" * 64 + b"\n"
                raw = head + stanza_line + body * full_lines + b"A" * (last - 1) + b"\n"
                assert len(raw) == size
                return header([], raw=raw) + payload([(b"x", True)])
        raise AssertionError("no layout found")

    assert age.decrypt_bytes(file_with_header(64 * 1024), [ID]) == b"x"
    with pytest.raises(IntegrityError, match=exactly("age: header too large")):
        age.decrypt_bytes(file_with_header(64 * 1024 + 1), [ID])


def test_a_stanza_body_is_checked_whole() -> None:
    """Every line of a stanza body is part of it: a bad first line is refused even when the last
    line alone would decode."""
    raw = age.VERSION_LINE + GOOD.encode() + b"-> grease\n" + b"!" * 64 + b"\nAAAA\n"
    refused(header([], raw=raw) + payload([(b"x", True)]), "age: malformed stanza body (base64)")
    fine = age.VERSION_LINE + GOOD.encode() + b"-> grease\n" + b"B" * 64 + b"\nAAAA\n"
    assert age.decrypt_bytes(header([], raw=fine) + payload([(b"x", True)]), [ID]) == b"x"


def test_a_passphrase_file_is_not_ours() -> None:
    """A file with a single scrypt stanza (a passphrase file) is not addressed to any identity;
    an scrypt stanza beside others is a malformed header."""
    scrypt = age.Stanza(("scrypt", "AAAAAAAAAAAAAAAAAAAAAA", "10"), bytes(32))
    refused(header([scrypt]) + payload([(b"x", True)]), "age: no identity matches this file (wrong recipient?)")
