"""The long fault campaign over malformed DICOM inputs (issue 9), runnable by hand.

    python benchmarks/fuzz_campaign.py [--seed N] [--limit K] [--per-seed M] [--processes P] [--no-verify]

Seeds: every file bundled with pydicom under 2 MB plus generated CT (``sfr_gateway.sample``).
Mutations (``tests/faults_fuzz.py``): truncation at every element header and inside headers and
values, flipped and huge length fields, undefined-length sequences left open, bogus VRs, deep
nesting (8 to 5,000 levels), wrong character sets, random byte havoc. Each input goes through the
header scan and de-identification in a guarded child (memory limit, time budget); released outputs
are re-read by pydicom and checked by ``verify`` against their own source. Prints the figures and
every finding (names of inputs and reasons only); exits 1 if there is any finding.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import faults_fuzz as fz  # noqa: E402 - the harness lives with the tests that share it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--limit", type=int, default=None, help="elements sampled per mutation kind and seed")
    parser.add_argument("--per-seed", type=int, default=None, help="mutated inputs kept per seed file")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-verify", action="store_true", help="skip the verify oracle (faster)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sfr-fuzz-") as tmp:
        work = Path(tmp)
        seed_files = fz.seeds(work / "generated", rng=rng)
        inputs = fz.inputs_for(seed_files, rng, args.limit, args.per_seed)
        tally = fz.run_campaign(inputs, work, processes=args.processes, verify=not args.no_verify)
    seconds = time.perf_counter() - started
    figures = {
        "seed": args.seed, "seed_files": len(seed_files), "inputs": tally.inputs, "seconds": round(seconds, 1),
        "inputs_per_second": round(tally.inputs / seconds, 1), "by_kind": dict(sorted(tally.by_kind.items())),
        "by_outcome": dict(sorted(tally.by_status.items())),
        "refusal_reasons": dict(Counter(tally.refused_reasons).most_common()),
        "findings": [{"input": n, "kind": k, "stage": o.stage, "status": o.status, "detail": o.detail}
                     for n, k, o in tally.findings],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{tally.inputs} inputs from {len(seed_files)} seed files in {seconds:.0f} s "
              f"({figures['inputs_per_second']}/s), seed {args.seed}")
        for key, value in figures["by_outcome"].items():
            print(f"  {key:<28} {value}")
        print("mutations:", ", ".join(f"{k} {v}" for k, v in figures["by_kind"].items()))
        print(f"findings: {len(tally.findings)}")
        for f in figures["findings"]:
            print(f"  {f['input']}: {f['stage']} {f['status']} {f['detail']}")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
