"""Scan benchmark: first scan of a generated export of >= 10,000 files, then an unchanged rescan.

Run: python benchmarks/bench_scan.py [--files 10000]
Reports first-scan files/s and the rescan/first-scan time ratio (target: <= 1/20).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import GATEWAY, byte_compile, cached_export, files_and_bytes, machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    byte_compile()  # the gateway as installed (see common.byte_compile)
    slices = 25
    patients = max(1, -(-args.files // slices))
    export = cached_export(f"scan-{args.files}", patients=patients, slices=slices, rows=32, cols=32, extras=False,
                           seed=3)
    n, size = files_and_bytes(export)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([*GATEWAY, "--home", str(home), "init", "--site-id", "BENCH01"], check=True, stdout=subprocess.DEVNULL)
        runs = []
        for label in ("first scan", "rescan (unchanged)", "rescan (unchanged)"):
            t = time.perf_counter()
            subprocess.run([*GATEWAY, "--home", str(home), "scan", str(export), "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            runs.append((label, time.perf_counter() - t))
    first = runs[0][1]
    rescan = min(r[1] for r in runs[1:])
    print(f"machine: {machine()}")
    print(f"export: {n} files, {size / 1e6:.0f} MB")
    print("| run | seconds | files/s |")
    print("|---|---:|---:|")
    for label, secs in runs:
        print(f"| {label} | {secs:.2f} | {n / secs:,.0f} |")
    print(f"rescan / first scan = {rescan / first:.3f} (target <= 0.05)")
    return 0 if rescan / first <= 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
