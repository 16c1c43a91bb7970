"""The C2SP age test vectors (CCTV, npm package ``cctv-age``) against our age implementation.

Every vector is a header (``expect``, ``payload`` hash, ``identity``...), an empty line, then an
age file, possibly zlib-compressed. A vector passes when decryption gives the expected outcome
(success, no match, HMAC failure, header failure or payload failure) and ALL the plaintext
released before the end or the error hashes to ``payload``. Provenance and the vectors that do
not apply (ASCII armor, passphrases, post-quantum hybrid keys) are in tests/data/cctv-age/README.md.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfr_gateway.crypto import age
from sfr_gateway.errors import IntegrityError

DATA = Path(__file__).parent / "data" / "cctv-age"
VECTORS = sorted((DATA / "testdata").iterdir())
# What README.md says does not apply, by kind, and how many vectors each kind holds.
NOT_APPLICABLE = {"armored": 33, "passphrase": 24, "hybrid": 18}
APPLICABLE = 68


@dataclass(frozen=True)
class Vector:
    name: str
    fields: dict[str, str]
    identities: list[str]
    passphrases: list[str]
    body: bytes

    @property
    def kind(self) -> str:
        if self.fields.get("armored") == "yes":
            return "armored"
        if any(i.startswith("AGE-SECRET-KEY-PQ-") for i in self.identities):
            return "hybrid"
        if self.passphrases and not self.identities:
            return "passphrase"
        return "x25519"


def load(path: Path) -> Vector:
    head, _, body = path.read_bytes().partition(b"\n\n")
    fields: dict[str, str] = {}
    identities, passphrases = [], []
    for line in head.decode("utf-8").splitlines():
        key, _, value = line.partition(": ")
        if key == "identity":
            identities.append(value)
        elif key == "passphrase":
            passphrases.append(value)
        else:
            fields[key] = value
    if fields.get("compressed") == "zlib":
        body = zlib.decompress(body)
    return Vector(path.name, fields, identities, passphrases, body)


def outcome(vector: Vector) -> tuple[str, bytes]:
    """What our Decryptor does with the vector: (CCTV outcome name, plaintext released)."""
    identities = [age.Identity.parse(i) for i in vector.identities] or [age.Identity.generate()]
    released = bytearray()
    try:
        dec = age.Decryptor(io.BytesIO(vector.body), identities)
    except IntegrityError as exc:
        text = str(exc)
        if "no identity matches" in text:
            return "no match", b""
        return ("HMAC failure" if "header MAC mismatch" in text else "header failure"), b""
    try:
        while block := dec.read(7919):  # an odd size: chunk boundaries never line up with reads
            released += block
    except IntegrityError:
        return "payload failure", bytes(released)
    return "success", bytes(released)


ALL = [load(p) for p in VECTORS]


def test_the_vectors_are_the_recorded_files() -> None:
    recorded = dict(line.split()[::-1] for line in (DATA / "SHA256SUMS").read_text().splitlines())
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in VECTORS} == recorded
    assert len(recorded) == 143


def test_only_the_documented_kinds_do_not_apply() -> None:
    kinds: dict[str, int] = {}
    for vector in ALL:
        kinds[vector.kind] = kinds.get(vector.kind, 0) + 1
    assert kinds == {**NOT_APPLICABLE, "x25519": APPLICABLE}
    readme = (DATA / "README.md").read_text()
    for kind, count in NOT_APPLICABLE.items():
        assert f"{count} {kind}" in readme


@pytest.mark.parametrize("vector", [v for v in ALL if v.kind == "x25519"], ids=lambda v: v.name)
def test_vector(vector: Vector) -> None:
    got, released = outcome(vector)
    assert got == vector.fields["expect"], vector.fields.get("comment", "")
    if "payload" in vector.fields:
        assert hashlib.sha256(released).hexdigest() == vector.fields["payload"]
    else:
        assert released == b""


@pytest.mark.parametrize("vector", [v for v in ALL if v.kind == "armored" and v.identities
                                    and not any(i.startswith("AGE-SECRET-KEY-PQ-") for i in v.identities)],
                         ids=lambda v: v.name)
def test_armored_files_fail_closed(vector: Vector) -> None:
    """Armor is not supported: an armored file is refused before any plaintext, never misread."""
    got, released = outcome(vector)
    assert got == "header failure" and released == b""
