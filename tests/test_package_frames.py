"""The batch body's framing (``tarzst``): tar members cut into zstd frames compressed by threads."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from sfr_gateway.batch import tarzst
from sfr_gateway.batch import write as package
from sfr_gateway.errors import IntegrityError

MTIME = 1_700_000_000


class Frames:
    """A sink that keeps each write (the writer writes one whole frame per call)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.frames.append(bytes(data))
        return len(data)

    def tar(self) -> bytes:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b"".join(self.frames)),
                                                           read_across_frames=True).read()


def _compressor() -> zstandard.ZstdCompressor:
    return package.compressor(1, 0, 7, 6)


def _source(tmp_path: Path, name: str, data: bytes) -> BinaryIO:
    path = tmp_path / name
    path.write_bytes(data)
    return open(path, "rb")  # noqa: SIM115 - the writer closes it


def _file_member(tmp_path: Path, name: str, head: bytes, prefix: bytes, pixels: bytes) -> tarzst.FileMember:
    source = _source(tmp_path, name, prefix + pixels)
    return tarzst.FileMember(head, source, len(prefix), len(pixels))


def _members(tar_bytes: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes + bytes(1024))) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


def test_small_members_share_frames_and_large_ones_are_split(tmp_path: Path) -> None:
    piece = 64 * 1024
    small = [(f"s{i}.dcm", bytes([i]) * 9_000 + b"end") for i in range(12)]  # ~9.5 KB of tar each
    big_pixels = bytes(range(256)) * 1_000  # with its header and head, a little under four pieces
    big = _file_member(tmp_path, "big", b"HEAD" * 100, b"PREFIX", big_pixels)
    sink = Frames()
    writer = tarzst.FrameWriter(sink, _compressor, threads=3, mtime=MTIME, piece_bytes=piece)
    try:
        for name, data in small[:6]:
            writer.add(name, data)
        writer.add("big.dcm", big)
        for name, data in small[6:]:
            writer.add(name, data)
        files, tar_bytes = writer.finish()
    finally:
        writer.close()
    assert big.source.closed
    expected = {**dict(small), "big.dcm": b"HEAD" * 100 + big_pixels}
    tar = sink.tar()
    assert len(tar) == tar_bytes
    assert _members(tar) == expected
    assert [f["name"] for f in files] == [n for n, _ in small[:6]] + ["big.dcm"] + [n for n, _ in small[6:]]
    assert all(f["sha256"] == hashlib.sha256(expected[f["name"]]).hexdigest() for f in files)
    assert all(f["size"] == len(expected[f["name"]]) for f in files)
    # 6 small members fit in one piece; the big one takes four pieces of its own; then 6 more small
    assert -(-(tarzst.BLOCK + 400 + 256_000 + 112) // piece) == 4
    assert len(sink.frames) == 1 + 4 + 1
    assert all(len(zstandard.ZstdDecompressor().decompress(f)) <= piece for f in sink.frames)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_frames_do_not_depend_on_the_thread_count(tmp_path: Path, threads: int) -> None:
    members = [(f"d/{i}.dcm", (b"%d" % i) * (3_000 * (i + 1))) for i in range(20)]
    reference, sink = Frames(), Frames()
    tarzst.write_members(members, reference, _compressor, 1, MTIME)
    tarzst.write_members(members, sink, _compressor, threads, MTIME)
    assert sink.frames == reference.frames


def test_a_source_that_shrinks_fails_the_batch_and_closes_every_source(tmp_path: Path) -> None:
    good = _file_member(tmp_path, "good", b"H", b"", b"x" * 5_000)
    short_source = _source(tmp_path, "short", b"y" * 100)
    short = tarzst.FileMember(b"H", short_source, 0, 5_000)  # claims more than the file holds
    later = _file_member(tmp_path, "later", b"H", b"", b"z" * 5_000)
    with pytest.raises(IntegrityError, match="became shorter"):
        tarzst.write_members([("a", good), ("b", short), ("c", later)], Frames(), _compressor, 2, MTIME,)
    assert good.source.closed and short_source.closed and later.source.closed


def test_a_refused_name_closes_the_sources(tmp_path: Path) -> None:
    queued = _file_member(tmp_path, "q", b"H", b"", b"q" * 1_000)
    refused = _file_member(tmp_path, "r", b"H", b"", b"r" * 1_000)

    def check(name: str) -> None:
        if name == "bad":
            raise ValueError("unsafe")

    with pytest.raises(ValueError, match="unsafe"):
        tarzst.write_members([("ok", queued), ("bad", refused)], Frames(), _compressor, 2, MTIME, check=check)
    assert queued.source.closed and refused.source.closed


def test_a_member_of_exactly_one_piece_and_an_empty_one(tmp_path: Path) -> None:
    piece = 8 * 1024
    exact = b"e" * (piece - tarzst.BLOCK)  # header + content fill one piece, no padding
    sink = Frames()
    writer = tarzst.FrameWriter(sink, _compressor, threads=2, mtime=MTIME, piece_bytes=piece)
    try:
        writer.add("empty", b"")
        writer.add("exact", exact)
        writer.add("after", b"a")
        files, _ = writer.finish()
    finally:
        writer.close()
    assert _members(sink.tar()) == {"empty": b"", "exact": exact, "after": b"a"}
    assert [f["sha256"] for f in files] == [hashlib.sha256(d).hexdigest() for d in (b"", exact, b"a")]
    assert len(sink.frames) == 3  # "exact" does not fit beside "empty": each piece is one frame


def test_a_member_the_writer_refuses_still_has_its_source_closed(tmp_path: Path) -> None:
    queued = _file_member(tmp_path, "q", b"H", b"", b"q" * 1_000)
    source = _source(tmp_path, "neg", b"n" * 100)
    impossible = tarzst.FileMember(b"", source, 0, -5)  # a negative size: no tar header for it
    with pytest.raises(ValueError, match="negative size"):
        tarzst.write_members([("ok", queued), ("neg", impossible)], Frames(), _compressor, 2, MTIME)
    assert queued.source.closed and source.closed
