"""A strict reader of the tar stream inside a batch: regular files only, bounded metadata.

``tarfile`` accepts whatever tar can hold (links, devices, GNU sparse files, PAX headers of any
size read whole into memory) and raises a zoo of exceptions; a batch only ever holds regular
files. This reader takes POSIX ustar and GNU headers, PAX extended headers (``path``, ``size``)
and GNU long names of bounded size, refuses every other member type, and raises IntegrityError
for anything malformed (bad checksum, bad number, truncation), never another exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import IntegrityError

BLOCK = 512
MAX_EXTENDED_HEADER = 64 * 1024  # a PAX header or GNU long name (ours: a path of at most ~1 KiB)
_REGULAR = (b"0", b"\0", b"7")  # '7' (contiguous) is a regular file to every reader
_KINDS = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
          b"5": "a folder", b"6": "a FIFO", b"g": "a global PAX header", b"K": "a GNU long link",
          b"S": "a GNU sparse file", b"V": "a volume label", b"M": "a multi-volume part"}

Read = Callable[[int], bytes]


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def _number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        if field[0] != 0x80:
            raise IntegrityError(f"batch: negative or oversized {what} in a tar header")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if any(c not in b"01234567" for c in text):
        raise IntegrityError(f"batch: malformed {what} in a tar header")
    return int(text, 8)


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip(b" ")
    if not stored or any(c not in b"01234567" for c in stored):
        return False
    blanked = header[:148] + b" " * 8 + header[156:]
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    return int(stored, 8) in (sum(blanked), signed)


def _pax(data: bytes) -> dict[str, str]:
    """PAX records ``"%d %s=%s\\n"``; IntegrityError when malformed."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise IntegrityError("batch: malformed PAX header") from None
        record = data[pos : pos + length]
        if space < 0 or length <= 0 or len(record) != length or not record.endswith(b"\n") or b"=" not in record:
            raise IntegrityError("batch: malformed PAX header")
        key, _, value = record[space - pos + 1 : -1].partition(b"=")
        try:
            out[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("batch: PAX header is not UTF-8") from None
        pos += length
    return out


class TarReader:
    """Members of a tar stream read through ``read(n)`` (which may return fewer bytes only at EOF)."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._pending = 0  # data and padding of the current member not consumed yet
        self._data_left = 0
        self.ended = False

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            block = self._read(n - len(data))
            if not block:
                raise IntegrityError("batch: the tar stream is truncated")
            data += block
        return data

    def _skip_rest(self) -> None:
        while self._pending:
            step = min(self._pending, 1024 * 1024)
            self._exact(step)
            self._pending -= step

    def next(self) -> Member | None:
        """The next regular file (its data is then read with ``read_data``), or None at the end."""
        self._skip_rest()
        overrides: dict[str, str] = {}
        while True:
            header = self._exact(BLOCK)
            if header == bytes(BLOCK):
                if self._exact(BLOCK) != bytes(BLOCK):
                    raise IntegrityError("batch: a single zero block inside the tar stream")
                self.ended = True
                return None
            if not _checksum_ok(header):
                raise IntegrityError("batch: a tar header with a bad checksum")
            if header[257:263] not in (b"ustar\x00", b"ustar "):
                raise IntegrityError("batch: not a ustar/PAX tar header")
            kind = header[156:157]
            size = _number(header[124:136], "size")
            if kind in (b"x", b"L"):
                if size > MAX_EXTENDED_HEADER:
                    raise IntegrityError(f"batch: an extended tar header of {size} bytes (at most "
                                         f"{MAX_EXTENDED_HEADER})")
                data = self._exact(size + (-size % BLOCK))[:size]
                if kind == b"L":
                    overrides["path"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                else:
                    overrides.update(_pax(data))
                continue
            name = overrides.get("path") or _name(header)
            if kind not in _REGULAR:
                what = _KINDS.get(kind, f"of type {kind!r}")
                raise IntegrityError(f"batch: {name!r} is {what}, not a regular file")
            if "size" in overrides:
                text = overrides["size"]
                if not text.isdigit():
                    raise IntegrityError("batch: malformed size in a PAX header")
                size = int(text)
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise IntegrityError("batch: a member name is not UTF-8") from None
            self._pending = size + (-size % BLOCK)
            self._data_left = size
            return Member(name, size)

    def read_data(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current member's data (b"" at its end)."""
        n = min(n, self._data_left)
        if n <= 0:
            return b""
        data = self._exact(n)
        self._data_left -= n
        self._pending -= n
        return data


def _name(header: bytes) -> str:
    raw = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:263] == b"ustar\x00" else b""
    if prefix:
        raw = prefix + b"/" + raw
    return raw.decode("utf-8", "surrogateescape")
