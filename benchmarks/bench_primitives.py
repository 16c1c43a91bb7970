"""What `run` must compute on top of `deidentify`, primitive by primitive, on the throughput export.

Run: ``python benchmarks/bench_primitives.py [--export DIR]`` (default: the export that
``bench_throughput.py`` generates and caches, 600 slices of 512 x 512).

A batch is not a copy: the format (issue 6) asks for each file's SHA-256 in the manifest, zstd,
age (ChaCha20-Poly1305), the SHA-256 of the batch file for the ledger and the signed comment,
and minisign's BLAKE2b-512 prehash of it for the signature. This measures the CPU seconds each
of these costs on the export's bytes, single-threaded (best of ``--rounds``), with the shipped
compression settings, and prints their sum: the CPU `run` spends beyond de-identifying, which no
scheduling can remove. With ``--deid-cpu`` (CPU seconds of `deidentify` on the same export) and
``--deid-wall``, it also prints the lowest `run` / `deidentify` ratio that N cores allow.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_EXPORT = HERE / "out" / "throughput-2p-600s-seed1" / "export"


def _best(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=DEFAULT_EXPORT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deid-cpu", type=float, help="CPU seconds of `deidentify` on the same export")
    parser.add_argument("--deid-wall", type=float, help="wall seconds of `deidentify` on the same export")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.export.is_dir():
        print(f"no export at {args.export}: run benchmarks/bench_throughput.py once first", file=sys.stderr)
        return 2

    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from sfr_gateway.batch.tarzst import PIECE_BYTES
    from sfr_gateway.batch.write import compressor
    from sfr_gateway.home.config import ZstdSettings

    files = [p.read_bytes() for p in sorted(args.export.rglob("*")) if p.is_file()]
    raw = sum(map(len, files))
    z = ZstdSettings()
    cctx = compressor(z.level, 0, z.min_match, z.hash_log)
    frames = [cctx.compress(f) for f in files]  # one frame per file, as tarzst does for CT slices
    packed = sum(map(len, frames))
    assert max(map(len, files)) <= PIECE_BYTES  # noqa: S101 - one piece per slice, as measured
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    stream = memoryview(b"".join(frames))
    nonce = bytes(12)

    def encrypt() -> None:
        for i in range(0, len(stream), 64 * 1024):
            aead.encrypt(nonce, stream[i : i + 64 * 1024], None)

    rows = [
        ("SHA-256 of every file (manifest)", raw, lambda: [hashlib.sha256(f).digest() for f in files]),
        (f"zstd level {z.level}, min_match {z.min_match}, hash_log {z.hash_log}, a frame per file", raw,
         lambda: [cctx.compress(f) for f in files]),
        ("ChaCha20-Poly1305, 64 KiB chunks (age)", packed, encrypt),
        ("SHA-256 of the batch file (ledger, signed comment)", packed, lambda: hashlib.sha256(stream).digest()),
        ("BLAKE2b-512 of the batch file (minisign prehash)", packed,
         lambda: hashlib.blake2b(stream, digest_size=64).digest()),
    ]
    print(f"export: {len(files)} files, {raw / 1e6:.0f} MB; compressed {packed / 1e6:.0f} MB "
          f"(ratio {packed / raw:.3f}); {args.cores} cores")
    print("| primitive | MB in | CPU s | MB per CPU-s |")
    print("|---|---:|---:|---:|")
    total = 0.0
    for name, size, fn in rows:
        cpu = _best(fn, args.rounds)
        total += cpu
        print(f"| {name} | {size / 1e6:.0f} | {cpu:.3f} | {size / 1e6 / cpu:.0f} |")
    print(f"| **sum: CPU `run` spends beyond de-identifying** | | **{total:.3f}** | |")
    if args.deid_cpu and args.deid_wall:
        lowest = (args.deid_cpu + total) / args.cores
        print(f"\n`deidentify`: {args.deid_cpu:.2f} CPU-s, {args.deid_wall:.2f} s wall. Even with every core busy "
              f"from the first to the last instant, `run` needs at least ({args.deid_cpu:.2f} + {total:.2f}) / "
              f"{args.cores} = {lowest:.2f} s: run / deidentify >= {lowest / args.deid_wall:.2f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
