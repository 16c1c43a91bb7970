"""Benchmark: de-identify a generated CT export beside `cp -r` and a plain pydicom read/write.

Usage::

    python benchmarks/bench_deidentify.py [--slices 600] [--size 512] [--rounds 3] [--workers 1 2]
                                          [--profile sfr-covid] [--data DIR] [--json]

Each contender runs in its own child process (peak RSS is that child's ``ru_maxrss``, read with
``os.wait4``; with worker processes, the largest of them), interleaved over ``--rounds`` rounds
with a warm page cache; the median time is
reported. Goal of the engine issue: deidentify <= 1.5 x the pydicom floor, RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYDICOM_FLOOR as PLAIN  # noqa: E402
from common import byte_compile  # noqa: E402

DEID = r"""
import os, sys
from pathlib import Path
from sfr_gateway.deid.folder import RunSpec, run
src, dst, workers, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
spec = RunSpec(profile=profile, options=(), site_overrides=(), site_private_keep=(), output=Path(dst),
               quarantine=Path(dst + ".quarantine"), keep_copies=False, secret=b"\x07" * 32, site_id="BENCH")
summary = run([Path(src)], spec, workers=workers)
if summary.released == 0:
    sys.exit("nothing released")
"""


def _child(argv: list[str]) -> tuple[float, float, float]:
    """Run ``argv``; return (wall seconds, CPU seconds, peak RSS MiB of its largest process).

    CPU seconds (user + system, children included) are robust to other load on the machine.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed with {proc.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


GENERATE = r"""
import sys
from pathlib import Path
from sfr_gateway.sample import generate_export
generate_export(Path(sys.argv[1]), patients=2, seed=1, rows=int(sys.argv[3]), cols=int(sys.argv[3]),
                slices=int(sys.argv[2]) // 2, extras=False)
"""


def generate(data: Path, slices: int, size: int) -> None:
    """Write the export (two patients, one axial series each) unless it is already there.

    Runs in a child so this parent stays small: a child's peak RSS starts from its parent's.
    """
    if data.exists() and any(data.rglob("*.dcm")):
        return
    subprocess.run([sys.executable, "-c", GENERATE, str(data), str(slices), str(size)], check=True)


def main() -> int:
    """Run the benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", default="sfr-covid")
    parser.add_argument("--data", type=Path, default=None, help="reuse/generate the export here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    byte_compile()  # the gateway as installed (see common.byte_compile)

    work = Path(tempfile.mkdtemp(prefix="sfr-bench-"))
    data = args.data or work / "export"
    generate(data, args.slices, args.size)
    files = [p for p in data.rglob("*.dcm")]
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    contenders: dict[str, list[str]] = {
        "cp -r": ["cp", "-r", str(data)],
        "pydicom read/write": [sys.executable, "-c", PLAIN, str(data)],
    }
    for w in args.workers:
        contenders[f"deidentify ({w} worker{'s' if w > 1 else ''})"] = [sys.executable, "-c", DEID, str(data)]
    times: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    rss: dict[str, float] = {k: 0.0 for k in contenders}
    _child(["cp", "-r", str(data), str(work / "warm")])  # warm the page cache
    shutil.rmtree(work / "warm")
    for _ in range(args.rounds):
        for name, argv in contenders.items():
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(str(out) + ".quarantine", ignore_errors=True)
            full = [*argv, str(out)]
            if name.startswith("deidentify"):
                full += [name.split("(")[1].split()[0], args.profile]
            seconds, used, peak = _child(full)
            times[name].append(seconds)
            cpu[name].append(used)
            rss[name] = max(rss[name], peak)
    floor = statistics.median(times["pydicom read/write"])
    cpu_floor = statistics.median(cpu["pydicom read/write"])
    rows = []
    for name in contenders:
        t = statistics.median(times[name])
        c = statistics.median(cpu[name])
        rows.append({"name": name, "seconds": round(t, 3), "cpu_seconds": round(c, 3),
                     "files_per_s": round(len(files) / t, 1), "mb_per_s": round(total_mb / t, 1),
                     "peak_rss_mb": round(rss[name], 1), "ratio_to_pydicom": round(t / floor, 2),
                     "cpu_ratio_to_pydicom": round(c / cpu_floor, 2)})
    result = {"files": len(files), "megabytes": round(total_mb, 1), "rounds": args.rounds,
              "profile": args.profile, "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
              f"Python {platform.python_version()}", "results": rows}
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['files']} files, {result['megabytes']} MB, median of {args.rounds} rounds, {result['machine']}")
    print(f"{'contender':<26}{'seconds':>9}{'files/s':>10}{'MB/s':>9}{'RSS MB':>9}{'x pydicom':>11}"
          f"{'CPU s':>9}{'CPU x':>8}")
    for r in rows:
        print(f"{r['name']:<26}{r['seconds']:>9}{r['files_per_s']:>10}{r['mb_per_s']:>9}"
              f"{r['peak_rss_mb']:>9}{r['ratio_to_pydicom']:>11}{r['cpu_seconds']:>9}{r['cpu_ratio_to_pydicom']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
