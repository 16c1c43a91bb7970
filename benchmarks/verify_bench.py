"""Throughput of ``sfr-gateway verify`` on a few thousand small synthetic files.

    python benchmarks/verify_bench.py [--patients 100] [--slices 30] [--size 32] [--workdir DIR]

Generates an export (one axial chest series per patient), makes a clean de-identified copy by
hand (the tests' fixture, not the engine) and times verify on it: files/s counts *output* files,
but the time includes reading every source file for tokens. Also times the worst case, where the
output is an untouched copy of the sources (every value leaks).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from verify_fixtures import hand_deidentify

from sfr_gateway.sample import generate_export
from sfr_gateway.verify import verify_outputs


def _cpu() -> float:
    """CPU seconds of this process and its (finished) workers: fair on a busy machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="verify-bench-"))
    src, clean, copy = work / "src", work / "clean", work / "copy"
    if not src.exists():
        generate_export(src, patients=args.patients, slices=args.slices, rows=args.size, cols=args.size,
                        extras=False)
    if not clean.exists():
        hand_deidentify(src, clean)
    if not copy.exists():
        shutil.copytree(src, copy)
    for label, out in (("clean de-identified", clean), ("untouched copy (all leaks)", copy)):
        started, cpu0 = time.perf_counter(), _cpu()
        report = verify_outputs(out, [src])
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu0
        print(f"{label}: {report.output_files} outputs vs {report.source_files} sources, "
              f"{sum(report.tokens.values())} tokens, {len(report.findings)} findings, "
              f"{seconds:.2f} s, {report.output_files / seconds:.0f} output files/s "
              f"({(report.output_files + report.source_files) / seconds:.0f} files read/s); "
              f"CPU {cpu:.1f} s, {report.output_files / cpu:.0f} output files per CPU-second")
    print(f"data in {work}")


if __name__ == "__main__":
    main()
