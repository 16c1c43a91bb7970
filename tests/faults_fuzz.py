"""DICOM fuzzing for the fault campaign: structure-aware mutators and a guarded runner.

Used by ``tests/test_fault_fuzz.py`` (seeded, bounded) and ``benchmarks/fuzz_campaign.py`` (long).

Mutators know where every element header, length field and sequence item of a seed file lies
(explicit or implicit VR little endian, nested sequences included) and produce: truncations at
every structural boundary and inside headers, flipped and huge length fields, undefined-length
sequences left open, bogus VRs, deep nesting and wrong character sets, plus random byte havoc.

The runner checks the invariant of issue 9 in a child process with a memory limit and a
per-file time budget: the header scan (``scan.read_chunk``) and de-identification
(``deidentify_file``) either accept the input or refuse it with a ``DicomError``; a released
output is re-readable by pydicom (every element, every depth). Anything else is a finding.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import resource
import signal
import struct
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

UNDEF = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
MEMORY_LIMIT = 1536 * 1024 * 1024  # address space of the checking child (bytes)
TIME_BUDGET = 10  # seconds per input and per check


@dataclass(frozen=True)
class Element:
    """Where one element (or item / delimiter) sits in the file."""

    start: int  # first byte of the tag
    tag: int
    vr: bytes  # b"" for implicit VR and item tags
    len_at: int  # offset of the length field
    len_size: int  # 2 or 4
    value_at: int
    length: int
    depth: int


def _implicit_is_sq(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def elements(data: bytes) -> list[Element]:
    """Every element header of a Part 10 little-endian file (meta + dataset, nested items too)."""
    out: list[Element] = []
    if data[128:132] != b"DICM":
        return out
    pos = 132
    implicit = False
    # file meta: explicit VR LE, group 0002
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 2:
        pos = _walk_one(data, pos, False, 0, out, len(data))
        if pos < 0:
            return out
    ts_elem = [e for e in out if e.tag == 0x00020010]
    if ts_elem:
        e = ts_elem[0]
        ts = data[e.value_at:e.value_at + e.length].rstrip(b"\0 ").decode("ascii", "replace")
        if ts == "1.2.840.10008.1.2":
            implicit = True
        elif ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
            return out  # big endian / deflated: structure mutations do not apply
    _walk(data, pos, len(data), implicit, 0, out)
    return out


def _walk(data: bytes, pos: int, end: int, implicit: bool, depth: int, out: list[Element]) -> int:
    end = min(end, len(data))
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", data, pos)
        if group == 0xFFFE and elem in (0xE00D, 0xE0DD):
            out.append(Element(pos, 0xFFFEE00D, b"", pos + 4, 4, pos + 8, 0, depth))
            return pos + 8
        pos = _walk_one(data, pos, implicit, depth, out, end)
        if pos < 0:
            return -1
    return pos


def _walk_one(data: bytes, pos: int, implicit: bool, depth: int, out: list[Element], end: int) -> int:
    group, elem = struct.unpack_from("<HH", data, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        vr, len_at, size = b"", pos + 4, 4
        is_sq = group != 0xFFFE and _implicit_is_sq(tag)
    else:
        vr = data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            len_at, size = pos + 8, 4
        else:
            len_at, size = pos + 6, 2
        is_sq = vr == b"SQ"
    if len_at + size > end:
        return -1
    length = struct.unpack_from("<L" if size == 4 else "<H", data, len_at)[0]
    value_at = len_at + size
    out.append(Element(pos, tag, vr, len_at, size, value_at, length, depth))
    if is_sq:
        stop = end if length == UNDEF else min(end, value_at + length)
        return _items(data, value_at, stop, implicit, depth + 1, out, length == UNDEF)
    if length == UNDEF:  # encapsulated pixel data: walk its items as boundaries
        return _items(data, value_at, end, implicit, depth + 1, out, True, leaf=True)
    return value_at + length


def _items(data: bytes, pos: int, stop: int, implicit: bool, depth: int, out: list[Element], undefined: bool,
           leaf: bool = False) -> int:
    stop = min(stop, len(data))
    while pos + 8 <= stop:
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        if group != 0xFFFE:
            return -1
        out.append(Element(pos, group << 16 | elem, b"", pos + 4, 4, pos + 8, length, depth))
        pos += 8
        if elem == 0xE0DD:
            return pos
        if elem != 0xE000:
            return -1
        if leaf:
            pos += 0 if length == UNDEF else length
            continue
        if length == UNDEF:
            pos = _walk(data, pos, stop, implicit, depth, out)
            if pos < 0:
                return -1
        else:
            inner = _walk(data, pos, pos + length, implicit, depth, out)
            if inner < 0:
                return -1
            pos += length
    return pos if not undefined else -1


def _set_len(data: bytes, e: Element, value: int) -> bytes:
    if e.len_size == 2:
        value &= 0xFFFF
        return data[:e.len_at] + struct.pack("<H", value) + data[e.len_at + 2:]
    return data[:e.len_at] + struct.pack("<L", value & 0xFFFFFFFF) + data[e.len_at + 4:]


def mutations(data: bytes, rng: random.Random, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(kind, mutated bytes) for one seed. Structural first, then havoc; ``limit`` per kind."""
    elems = elements(data)
    dataset_elems = [e for e in elems if e.tag >> 16 != 2]

    def pick(seq: list[Element], n: int | None) -> list[Element]:
        if n is None or len(seq) <= n:
            return seq
        return rng.sample(seq, n)

    for e in pick(elems, limit):  # truncation at every element header, and inside it
        yield "truncate-at-header", data[:e.start]
        yield "truncate-in-header", data[:e.start + rng.randint(1, max(1, e.value_at - e.start - 1))]
        if e.length not in (0, UNDEF):
            yield "truncate-in-value", data[:e.value_at + rng.randrange(e.length) if e.length else e.value_at]
    yield "truncate-preamble", data[:rng.randint(0, 131)]
    for e in pick(dataset_elems, limit):  # flipped length fields
        if e.tag & 0xFFFF0000 == 0xFFFE0000 and e.tag != 0xFFFEE000:
            continue
        for value in rng.sample([0, 1, e.length + 1, max(0, e.length - 1), e.length ^ 0x80, e.length * 2 + 3,
                                 len(data), len(data) + 1], 3):
            yield "flip-length", _set_len(data, e, value)
        yield "huge-length", _set_len(data, e, rng.choice([0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFE, 0x10000000]))
        yield "undefined-length", _set_len(data, e, UNDEF)
    sqs = [e for e in dataset_elems if e.vr == b"SQ" or (e.vr == b"" and e.tag >> 16 != 0xFFFE
                                                          and _implicit_is_sq(e.tag))]
    for e in pick(sqs, limit):  # undefined-length sequences left open
        if e.length == UNDEF:
            yield "sequence-open", data[:e.value_at + rng.randint(0, 64)]
            continue
        body = data[e.value_at:e.value_at + e.length]
        opened = data[:e.len_at] + struct.pack("<L", UNDEF) + data[e.value_at:]
        yield "sequence-open", opened  # no delimiter anywhere after
        yield "sequence-open-at-end", _set_len(data, e, UNDEF)[:e.value_at + len(body)]
    bogus = [b"ZZ", b"\0\0", b"SQ", b"OB", b"UN", b"UL", b"xx", b"PN", b"DS", b"AT"]
    for e in pick([e for e in dataset_elems if e.vr], limit):  # bogus VRs
        yield "bogus-vr", data[:e.start + 4] + rng.choice(bogus) + data[e.start + 6:]
    yield from _charset_mutations(data, rng)
    for depth in (8, 64, 600, 5000):
        yield "deep-nesting", deep_nesting(data, dataset_elems, depth)
    for _ in range(limit or 32):  # havoc: random byte edits in the first 4 KiB
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(min(len(buf), 4096))
            buf[at] = rng.randrange(256)
        yield "havoc", bytes(buf)


def deep_nesting(data: bytes, elems: list[Element], depth: int) -> bytes:
    """Insert a private sequence nested ``depth`` levels (undefined lengths) before the first
    dataset element after group 0008 (explicit VR files; implicit ones get it too, as UN-coded)."""
    anchor = next((e for e in elems if e.depth == 0 and e.tag > 0x00090000), None)
    if anchor is None:
        return data
    explicit = bool(anchor.vr)
    head = b"\x09\x00\x10\x00" + ((b"LO\x06\x00" if explicit else b"\x06\x00\x00\x00") + b"FUZZ  ")
    seq_hdr = b"\x09\x00\x00\x10" + ((b"SQ\x00\x00" if explicit else b"") + struct.pack("<L", UNDEF))
    item = struct.pack("<HHL", 0xFFFE, 0xE000, UNDEF)
    item_end = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    seq_end = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    nested = (seq_hdr + item) * depth + (item_end + seq_end) * depth
    return data[:anchor.start] + head + nested + data[anchor.start:]


def _charset_mutations(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, Exception):  # noqa: BLE001 - a seed we cannot re-encode
        return
    for charset in ("ISO_IR 192", "ISO_IR 999", "ISO 2022 IR 87", "GB18030", "ISO_IR 100\\ISO 2022 IR 6",
                    "", "\\\\"):
        copy = pydicom.dcmread(io.BytesIO(data))
        copy.SpecificCharacterSet = charset
        if "PatientName" in copy and rng.random() < 0.8:  # the name plus bytes invalid in UTF-8, odd escapes
            name = copy[0x00100010]
            original = name.value if isinstance(name.value, bytes) else str(name.value).encode("latin-1", "replace")
            name.value = original + rng.choice([b"\xe9l\xe8ve\xff\xfe", b"\x1b$B\x1b(B", b"\x00\xc3"])
            name.VR = "PN"
        buf = io.BytesIO()
        try:
            copy.save_as(buf, enforce_file_format=False)
        except Exception:  # noqa: BLE001 - pydicom refused to write this one: skip it
            continue
        yield "wrong-charset", buf.getvalue()
    del ds


@dataclass
class Outcome:
    """The verdict on one input for one stage."""

    stage: str
    status: str  # released | refused | crash | hang | memory | reread-failed | child-died
    detail: str = ""


@dataclass
class Tally:
    """Aggregated figures of a campaign."""

    inputs: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    refused_reasons: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[str, str, Outcome]] = field(default_factory=list)

    def add(self, name: str, kind: str, outcomes: list[Outcome]) -> None:
        self.inputs += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        for o in outcomes:
            key = f"{o.stage}:{o.status}"
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if o.status == "refused":
                reason = f"{o.stage}:{o.detail}"
                self.refused_reasons[reason] = self.refused_reasons.get(reason, 0) + 1
            elif o.status != "released":
                self.findings.append((name, kind, o))


class _Budget(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Budget()


def _guard(stage: str, fn, *args) -> Outcome:  # type: ignore[no-untyped-def]
    from sfr_gateway.errors import DicomError

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_BUDGET)
    try:
        detail = fn(*args)
        return Outcome(stage, "released", detail or "")
    except DicomError as exc:
        return Outcome(stage, "refused", exc.reason)
    except _Budget:
        return Outcome(stage, "hang", f"over {TIME_BUDGET} s")
    except MemoryError:
        return Outcome(stage, "memory", "MemoryError")
    except _Reread as exc:
        return Outcome(stage, "reread-failed", str(exc))
    except _Leak as exc:
        return Outcome(stage, "verify-failed", str(exc))
    except BaseException as exc:  # noqa: BLE001 - the very thing we hunt
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "sfr_gateway" in f.filename][-1:]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed([*ours, *frames[-2:]]))
        return Outcome(stage, "crash", f"{type(exc).__name__} at {where}")
    finally:
        signal.alarm(0)


class _Reread(Exception):
    pass


_CHILD: dict[str, object] = {}


def _child_init(verify: bool) -> None:
    import logging
    import warnings

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    from sfr_gateway.deid.profile import compile_plan, load_profile
    from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys

    plan = compile_plan(load_profile("sfr-covid"))
    _CHILD.update(plan=plan, pz=Pseudonymizer(PseudonymKeys(b"\x07" * 32, "FUZZ01"), offset_range=plan.offset_range),
                  verify=verify)


def _scan_one(path: str) -> str:
    from sfr_gateway.scan.walk import read_chunk

    (outcome,) = read_chunk([(os.fsencode(path), 0, 0)])
    if isinstance(outcome[3], str):
        from sfr_gateway.errors import DicomError

        raise DicomError(outcome[3])
    return ""


def _touch_all(ds) -> int:  # type: ignore[no-untyped-def]
    n = 0
    for elem in ds.iterall():
        _ = elem.value
        n += 1
    return n


def _deid_one(path: str) -> str:
    import pydicom

    from sfr_gateway.deid.files import deidentify_file

    result = deidentify_file(Path(path), _CHILD["plan"], _CHILD["pz"])  # type: ignore[arg-type]
    assert result.data is not None
    try:
        ds = pydicom.dcmread(io.BytesIO(result.data))
        _touch_all(ds)
    except Exception as exc:  # noqa: BLE001
        raise _Reread(f"{type(exc).__name__}") from None
    if _CHILD.get("verify"):
        _verify_one(Path(path), result.data)
    return ""


class _Leak(Exception):
    pass


def _verify_one(src: Path, data: bytes) -> None:
    """The independent oracle on this one pair: no PHI token of the source in the output."""
    import tempfile

    from sfr_gateway.errors import InputError
    from sfr_gateway.verify import verify_outputs

    with tempfile.TemporaryDirectory(prefix="fuzzv-") as tmp:
        out = Path(tmp, "out")
        out.mkdir()
        (out / "o.dcm").write_bytes(data)
        try:
            report = verify_outputs(out, [src], workers=1)
        except InputError:  # the oracle cannot read this source: nothing to compare against
            return
    errors = [f for f in report.findings if f.severity == "error"]
    if errors:
        raise _Leak(", ".join(sorted({f"{f.check}:{f.kind}@{f.keyword}" for f in errors}))[:300])


def check_file(path: str) -> list[Outcome]:
    """Both invariants on one input file (runs in the guarded child)."""
    return [_guard("scan", _scan_one, path), _guard("deid", _deid_one, path)]


def run_campaign(inputs: Iterator[tuple[str, str, bytes]], work: Path, *, processes: int = 2,
                 verify: bool = True) -> Tally:
    """Check every (name, kind, bytes) input in ``processes`` guarded children; returns the tally.

    A child that dies (segfault, hard memory kill) is recorded as ``child-died`` for its input and
    replaced. Inputs are written to ``work/in``; each released output is checked by ``verify``
    against its own source (``verify=False`` skips that, for speed).
    """
    src = work / "in"
    src.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    ctx = multiprocessing.get_context("fork")
    pending: list[tuple[str, str, str]] = []
    for name, kind, data in inputs:
        path = src / name
        path.write_bytes(data)
        pending.append((name, kind, str(path)))
    while pending:
        with ctx.Pool(processes, initializer=_child_init, initargs=(verify,),
                      maxtasksperchild=200) as pool:
            handles = [(n, k, pool.apply_async(check_file, (p,))) for n, k, p in pending]
            retry: list[tuple[str, str, str]] = []
            for i, (n, k, h) in enumerate(handles):
                try:
                    tally.add(n, k, h.get(timeout=3 * TIME_BUDGET + 30))
                except multiprocessing.TimeoutError:
                    # the pool lost a worker (killed): record this input, re-run the rest
                    tally.add(n, k, [Outcome("any", "child-died", "no answer from the checking child")])
                    retry = [(n2, k2, str(src / n2)) for n2, k2, _ in handles[i + 1:]
                             if not _ready(_)]
                    for n2, k2, h2 in handles[i + 1:]:
                        if _ready(h2):
                            tally.add(n2, k2, h2.get())
                    break
            pool.terminate()
        pending = retry
    return tally


def _ready(handle) -> bool:  # type: ignore[no-untyped-def]
    return bool(handle.ready() and handle.successful())


def seeds(generated: Path, *, bundled: int | None = None, rng: random.Random) -> list[tuple[str, bytes]]:
    """Seed files: pydicom's bundled test files (a sample of ``bundled``) and generated CT."""
    import pydicom.data

    from sfr_gateway.sample import generate_export

    out: list[tuple[str, bytes]] = []
    local = Path(pydicom.data.__file__).parent / "test_files"  # bundled files only: never download
    names = sorted(str(p) for p in local.rglob("*.dcm") if p.stat().st_size < 2_000_000)
    if bundled is not None:
        must = [str(local / n) for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]
        names = sorted(set(must) | set(rng.sample(names, min(bundled, len(names)))))
    for p in names:
        out.append((f"pydicom-{Path(p).stem}", Path(p).read_bytes()))
    export = generate_export(generated, patients=1, seed=rng.randrange(1000), rows=16, cols=16, slices=2)
    for p in export.files[:: max(1, len(export.files) // 6)]:
        out.append((f"sample-{p.stem}", p.read_bytes()))
    return out


def inputs_for(seed_list: list[tuple[str, bytes]], rng: random.Random, limit: int | None,
               per_seed: int | None = None) -> Iterator[tuple[str, str, bytes]]:
    """(unique name, kind, bytes) for every mutation of every seed, at most ``per_seed`` each."""
    counter = 0
    for seed_name, data in seed_list:
        produced = list(mutations(data, rng, limit))
        if per_seed is not None and len(produced) > per_seed:
            produced = rng.sample(produced, per_seed)
        for kind, mutated in produced:
            counter += 1
            yield f"{counter:06d}-{seed_name}-{kind}.dcm", kind, mutated
