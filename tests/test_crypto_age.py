"""age v1 format: keys, round trips, and rejection of every kind of tampering."""

from __future__ import annotations

import io
import itertools
import os
import tracemalloc

import pytest
from crypto_fixtures import CHUNK, EDGE_SIZES, payload_offset
from hypothesis import given, settings
from hypothesis import strategies as st

from sfr_gateway.crypto import age, bech32
from sfr_gateway.errors import IntegrityError, KeyFileError

ID1 = age.Identity.generate()
ID2 = age.Identity.generate()
OTHER = age.Identity.generate()


def test_spec_example_keys_match() -> None:
    # The identity/recipient pair printed in the age specification (c2sp.org/age).
    ident = age.Identity.parse("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
    assert str(ident.recipient) == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert ident.to_string() == "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"


def test_key_strings_round_trip_and_reject_garbage() -> None:
    assert age.Recipient.parse(str(ID1.recipient)) == ID1.recipient
    assert age.Identity.parse(ID1.to_string()) == ID1
    bad = str(ID1.recipient)[:-1] + ("q" if str(ID1.recipient)[-1] != "q" else "p")
    for text in [bad, str(ID1.recipient).upper(), ID1.to_string(), "age1", "", "hello"]:
        with pytest.raises(KeyFileError):
            age.Recipient.parse(text)
    with pytest.raises(KeyFileError):
        age.Identity.parse(ID1.to_string().lower())
    with pytest.raises(bech32.Bech32Error):
        bech32.decode("Age1abc")


def test_identity_never_shows_its_secret() -> None:
    assert ID1.to_string() not in repr(ID1)
    assert ID1.secret.hex() not in repr(ID1)


def test_identity_file_text_parses_back() -> None:
    text = age.identity_file_text(ID1)
    assert f"# public key: {ID1.recipient}" in text
    assert age.parse_identities(text) == [ID1]
    with pytest.raises(KeyFileError):
        age.parse_identities("# only a comment\n")


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_round_trip_edge_sizes(size: int) -> None:
    data = os.urandom(size)
    ct = age.encrypt_bytes(data, [ID1.recipient])
    chunks = max(1, -(-size // CHUNK))
    assert len(ct) - payload_offset(ct) == size + 16 * chunks  # exact STREAM framing
    assert age.decrypt_bytes(ct, [ID1]) == data


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3 * CHUNK + 7), cuts=st.lists(st.integers(0, 3 * CHUNK + 7), max_size=6))
def test_round_trip_any_bytes_any_write_pattern(data: bytes, cuts: list[int]) -> None:
    out = io.BytesIO()
    bounds = sorted({0, len(data), *[c for c in cuts if c <= len(data)]})
    with age.Encryptor(out, [ID1.recipient, ID2.recipient]) as enc:
        for a, b in itertools.pairwise(bounds):
            enc.write(data[a:b])
    assert age.decrypt_bytes(out.getvalue(), [ID1]) == data
    assert age.decrypt_bytes(out.getvalue(), [OTHER, ID2]) == data


@settings(max_examples=10, deadline=None)
@given(extra=st.sampled_from([-1, 0, 1]), chunks=st.integers(1, 3))
def test_round_trip_chunk_multiples(extra: int, chunks: int) -> None:
    data = os.urandom(chunks * CHUNK + extra)
    assert age.decrypt_bytes(age.encrypt_bytes(data, [ID1.recipient]), [ID1]) == data


def test_encrypt_stream_accepts_streams_and_iterables() -> None:
    data = os.urandom(2 * CHUNK + 5)
    a, b = io.BytesIO(), io.BytesIO()
    assert age.encrypt_stream(io.BytesIO(data), a, [ID1.recipient]) == len(data)
    assert age.encrypt_stream([data[:10], data[10:]], b, [ID1.recipient]) == len(data)
    assert age.decrypt_bytes(a.getvalue(), [ID1]) == age.decrypt_bytes(b.getvalue(), [ID1]) == data


def test_wrong_identity_is_rejected() -> None:
    ct = age.encrypt_bytes(b"secret study", [ID1.recipient])
    with pytest.raises(IntegrityError, match="no identity"):
        age.decrypt_bytes(ct, [OTHER])


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([0, 100, CHUNK, 2 * CHUNK + 3]), where=st.floats(0, 1), bit=st.integers(0, 7))
def test_any_flipped_bit_is_rejected(size: int, where: float, bit: int) -> None:
    ct = bytearray(age.encrypt_bytes(os.urandom(size), [ID1.recipient]))
    pos = min(int(where * len(ct)), len(ct) - 1)
    ct[pos] ^= 1 << bit
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(bytes(ct), [ID1])


@pytest.mark.parametrize("size", [CHUNK, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK])
def test_truncation_at_every_chunk_boundary_is_rejected(size: int) -> None:
    ct = age.encrypt_bytes(os.urandom(size), [ID1.recipient])
    start = payload_offset(ct)
    for k in range(-(-size // CHUNK)):
        cut = start + k * (CHUNK + 16)
        with pytest.raises(IntegrityError):
            age.decrypt_bytes(ct[:cut], [ID1])


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0, 1))
def test_any_truncation_is_rejected(cut: float) -> None:
    ct = age.encrypt_bytes(os.urandom(2 * CHUNK + 10), [ID1.recipient])
    n = int(cut * (len(ct) - 1))
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(ct[:n], [ID1])


@pytest.mark.parametrize("trailer", [b"\0", b"x" * 17, os.urandom(CHUNK + 16)])
@pytest.mark.parametrize("size", [5, CHUNK])
def test_trailing_data_is_rejected(size: int, trailer: bytes) -> None:
    ct = age.encrypt_bytes(os.urandom(size), [ID1.recipient])
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(ct + trailer, [ID1])


def test_swapped_chunks_are_rejected() -> None:
    ct = age.encrypt_bytes(os.urandom(3 * CHUNK), [ID1.recipient])
    s, n = payload_offset(ct), CHUNK + 16
    swapped = ct[:s] + ct[s + n : s + 2 * n] + ct[s : s + n] + ct[s + 2 * n :]
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(swapped, [ID1])


def test_empty_final_chunk_after_data_is_rejected() -> None:
    out = io.BytesIO()
    enc = age.Encryptor(out, [ID1.recipient])
    enc._emit(b"a" * CHUNK, last=False)  # a full non-final chunk, then an (illegal) empty final one
    enc._emit(b"", last=True)
    with pytest.raises(IntegrityError, match="empty final chunk"):
        age.decrypt_bytes(out.getvalue(), [ID1])


def test_interrupted_producer_never_yields_a_valid_file() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), age.Encryptor(out, [ID1.recipient]) as enc:
        enc.write(os.urandom(CHUNK + 10))
        raise RuntimeError("producer died")
    with pytest.raises(IntegrityError):
        age.decrypt_bytes(out.getvalue(), [ID1])


def test_unknown_stanzas_are_ignored_and_x25519_stanzas_validated() -> None:
    file_key = os.urandom(16)
    grease = age.Stanza(("example.com/grease", "x"), os.urandom(70))
    good = age._wrap_for(ID1.recipient, file_key)

    def build(stanzas: list[age.Stanza]) -> bytes:
        header = age.VERSION_LINE + b"".join(s.encode() for s in stanzas) + b"---"
        mac = age._header_mac(file_key, header)
        nonce = os.urandom(16)
        aead = age.ChaCha20Poly1305(age._hkdf(file_key, nonce, b"payload"))
        body = aead.encrypt(bytes(11) + b"\x01", b"hello", None)
        return header + b" " + age.b64encode(mac).encode() + b"\n" + nonce + body

    assert age.decrypt_bytes(build([grease, good]), [ID1]) == b"hello"
    bad = age.Stanza(("X25519", good.args[1], "extra"), good.body)
    with pytest.raises(IntegrityError, match="malformed X25519"):
        age.decrypt_bytes(build([bad, good]), [ID1])
    short = age.Stanza(good.args, good.body[:-1])
    with pytest.raises(IntegrityError, match="body length"):
        age.decrypt_bytes(build([short]), [ID1])


def test_stanza_body_wrapping_ends_with_a_short_line() -> None:
    lines = age.Stanza(("X25519", "abc"), bytes(48)).encode().split(b"\n")
    assert [len(x) for x in lines[1:]] == [64, 0, 0]  # 64 columns, then the required short (empty) line


def test_base64_must_be_canonical() -> None:
    assert age.b64decode("AA") == b"\0"
    for text in ["AB", "AA==", "A A", "@@"]:
        with pytest.raises(ValueError):
            age.b64decode(text)


def test_encryption_memory_is_bounded() -> None:
    sink_size = 0

    class Sink:
        def write(self, data: bytes) -> int:
            nonlocal sink_size
            sink_size += len(data)
            return len(data)

    block = os.urandom(256 * 1024)
    tracemalloc.start()
    try:
        age.encrypt_stream((block for _ in range(64)), Sink(), [ID1.recipient])  # 16 MiB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sink_size > 16 * 1024 * 1024
    assert peak < 2 * 1024 * 1024, peak


def test_parse_recipients_names_the_bad_one() -> None:
    assert age.parse_recipients([str(ID1.recipient), str(ID2.recipient)]) == [ID1.recipient, ID2.recipient]
    with pytest.raises(KeyFileError, match="#2"):
        age.parse_recipients([str(ID1.recipient), "age1nope"])


@pytest.mark.parametrize("sizes", [[CHUNK], [CHUNK + 1], [3 * CHUNK], [1, CHUNK, CHUNK - 1, 2 * CHUNK + 7], [0, 5, 0]])
def test_writes_of_any_size_give_the_same_chunks(sizes: list[int]) -> None:
    """Whole chunks taken straight from the caller's buffer or through the internal one: same stream."""
    data = os.urandom(sum(sizes))
    out = io.BytesIO()
    with age.Encryptor(out, [ID1.recipient]) as enc:
        pos = 0
        for n in sizes:
            enc.write(memoryview(data)[pos : pos + n])
            pos += n
    assert age.decrypt_bytes(out.getvalue(), [ID1]) == data
    payload = len(out.getvalue()) - out.getvalue().index(b"\n---") - 4  # rest of the "---" line + nonce + chunks
    assert payload > 0
    chunks = max(1, -(-len(data) // CHUNK))
    assert len(out.getvalue()) - (out.getvalue().index(b"\n", out.getvalue().index(b"\n---") + 1) + 1) == (
        16 + len(data) + 16 * chunks)


def test_chunk_writer_can_start_after_reserved_chunks() -> None:
    """Chunks 0..k-1 written last, out of order: the same valid stream."""
    header, aead = age.stream_header([ID1.recipient])
    head, rest = os.urandom(2 * CHUNK), os.urandom(CHUNK * 3 + 11)
    tail = io.BytesIO()
    writer = age.ChunkWriter(tail, aead, first=2)
    writer.write(rest)
    writer.finish()
    front = io.BytesIO()
    early = age.ChunkWriter(front, aead, first=0)
    early.write(head)
    early.end_region()  # chunks 0 and 1, neither of them the last
    assert early.next_counter == 2
    assert len(front.getvalue()) == 2 * (CHUNK + 16)
    assert age.decrypt_bytes(header + front.getvalue() + tail.getvalue(), [ID1]) == head + rest


def test_reads_of_any_size_give_the_plaintext_and_decrypt_stream_counts_it() -> None:
    """``central open`` reads the stream in its own block sizes: any sequence of read sizes gives
    the plaintext once, in order; ``decrypt_stream`` returns the plaintext length it wrote."""
    data = os.urandom(2 * CHUNK + 1000)
    ct = age.encrypt_bytes(data, [ID1.recipient])
    for sizes in ([1, 7, CHUNK, 3], [CHUNK - 1, 2], [5000]):
        dec = age.Decryptor(io.BytesIO(ct), [ID1])
        got = bytearray()
        for size in itertools.cycle(sizes):
            block = dec.read(size)
            if not block:
                break
            assert len(block) <= size
            got += block
            assert len(got) <= len(data), "a byte was returned twice"
        assert bytes(got) == data
    out = io.BytesIO()
    assert age.decrypt_stream(io.BytesIO(ct), out, [ID1]) == len(data) == len(out.getvalue())
    assert age.decrypt_stream(io.BytesIO(age.encrypt_bytes(b"", [ID1.recipient])), io.BytesIO(), [ID1]) == 0
