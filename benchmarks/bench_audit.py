"""Benchmark: ``sfr-gateway audit`` on a generated export, per format and worker count.

Usage::

    python benchmarks/bench_audit.py [--patients 40] [--slices 10] [--size 128] [--workers 1 2] [--json]

Each run is a child process; peak RSS is that child's ``ru_maxrss`` (``os.wait4``). It shows that
records stream (RSS does not grow with the number of files) and the files/s of the dry run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import GATEWAY, byte_compile, cached_export, files_and_bytes, machine


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - t, usage.ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--formats", nargs="+", default=["json", "csv", "html", "table"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    byte_compile()  # the gateway as installed (see common.byte_compile)
    export = cached_export(f"audit-{args.patients}-{args.slices}-{args.size}", patients=args.patients,
                           slices=args.slices, rows=args.size, cols=args.size)
    n, size = files_and_bytes(export)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([*GATEWAY, "--home", str(home), "init", "--site-id", "BENCH01"], check=True,
                       stdout=subprocess.DEVNULL)
        for fmt in args.formats:
            for workers in args.workers:
                out = Path(tmp) / f"audit.{fmt}"
                wall, rss = run([*GATEWAY, "--home", str(home), "audit", str(export), "--format", fmt,
                                 "--output", str(out), "--workers", str(workers)])
                results.append({"format": fmt, "workers": workers, "files": n, "seconds": round(wall, 2),
                                "files_per_s": round(n / wall, 1), "peak_rss_mb": rss,
                                "report_mb": round(out.stat().st_size / 2**20, 1)})
    if args.json:
        print(json.dumps({"machine": machine(), "export_mb": round(size / 2**20), "results": results}, indent=2))
        return
    print(f"{machine()}; export: {n} files, {size / 2**20:.0f} MB")
    print("format  workers  seconds  files/s  peak RSS MB  report MB")
    for r in results:
        print(f"{r['format']:<7} {r['workers']:>7} {r['seconds']:>8} {r['files_per_s']:>8} "
              f"{r['peak_rss_mb']:>12} {r['report_mb']:>10}")


if __name__ == "__main__":
    main()
