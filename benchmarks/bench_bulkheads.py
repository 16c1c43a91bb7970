"""One `run` over a large export that holds duplicate SOP Instance UIDs (issue 23).

    python benchmarks/bench_bulkheads.py [--patients 100] [--slices 500] [--size 32]
                                         [--conflicts 50] [--copies 50] [--workers 2] [--fault]

Generates (once, cached in ``benchmarks/out/``) ``patients`` × one chest-CT study of ``slices``
small images (50,000 files by default; small, to stay feasible on a shared 2-core machine), then
spoils it as a broken modality and a re-export would: ``conflicts`` images of patients of the
second half get the SOP Instance UID of an image of the first half (other content, another
patient), and ``copies`` files are copied byte for byte into a ``reexport/`` folder. With
``--fault``, an exception is also raised inside the engine for one study (``SFR_GATEWAY_RAISE``).

Then one timed ``sfr-gateway run`` (fresh HOME, every patient consented, drop-folder
destination) and checks that it released everything releasable: every UID once, the conflicting
files held back, the copies released once, exit 19 (partial). Prints and saves (``benchmarks/results/
bulkheads.json``) the wall time, stage times, peak RSS of the largest process and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GATEWAY, OUT, byte_compile, machine  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bulkheads.json"


def build_export(args: argparse.Namespace) -> tuple[Path, Path]:
    """The spoiled export and its consent CSV (cached by parameters)."""
    import pydicom

    from sfr_gateway.sample import generate_export

    params = {k: getattr(args, k) for k in ("patients", "slices", "size", "conflicts", "copies")}
    root = OUT / f"bulkheads-{args.patients}x{args.slices}"
    stamp = root / ".complete.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return root / "export", root / "consent.csv"
    if root.exists():
        shutil.rmtree(root)
    t = time.perf_counter()
    export = generate_export(root / "export", patients=args.patients, slices=args.slices, rows=args.size,
                             cols=args.size, extras=False, seed=23)
    by_patient: dict[str, list[Path]] = {}
    for f in export.files:
        by_patient.setdefault(f.parts[-3], []).append(f)
    names = sorted(by_patient)
    half = len(names) // 2
    for k in range(args.conflicts):  # an image of the second half takes a UID of the first half's
        owner = sorted(by_patient[names[k % half]])[(k * 7) % args.slices]
        victim = sorted(by_patient[names[half + k % half]])[(k * 11 + 3) % args.slices]
        ds = pydicom.dcmread(victim)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = \
            pydicom.dcmread(owner, stop_before_pixels=True).SOPInstanceUID
        ds.save_as(victim, enforce_file_format=True)
    copies = root / "export" / "reexport"
    copies.mkdir()
    for k in range(args.copies):  # byte-identical re-exports
        source = sorted(by_patient[names[k % len(names)]])[(k * 5 + 1) % args.slices]
        shutil.copy2(source, copies / f"copy{k:05d}.dcm")
    lines = [f"{p.patient_id};{p.issuer};consented;2026-01-15" for p in export.patients]
    (root / "consent.csv").write_text("patient_id;issuer;status;date\n" + "\n".join(lines) + "\n")
    print(f"generated {len(export.files) + args.copies} files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    stamp.write_text(json.dumps(params))
    return root / "export", root / "consent.csv"


def gateway(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, "--home", str(home), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=32, help="rows and columns of each image")
    parser.add_argument("--conflicts", type=int, default=50)
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault", action="store_true", help="also raise inside the engine for one study")
    args = parser.parse_args()
    byte_compile()
    export, consent_csv = build_export(args)
    work = OUT / "bulkheads-run"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    home, drop = work / "home", work / "drop"
    drop.mkdir()
    key = gateway(home, "central", "keygen", "--output", str(work / "central.key"))
    recipient = next(w for w in key.stdout.split() if w.startswith("age1"))
    assert gateway(home, "init", "--site-id", "BENCH01", "--central-recipient", recipient, "--destination",
                   drop.as_uri(), "--export", str(export)).returncode == 0
    assert gateway(home, "consent", "import", str(consent_csv)).returncode == 0
    env = {"SFR_GATEWAY_RAISE": "deidentify:/P0001/"} if args.fault else {}  # owns conflicting UIDs
    subprocess.run(["sync"], check=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = gateway(home, "run", "--json", "--workers", str(args.workers), env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 19):
        sys.exit(f"run failed ({proc.returncode}): {proc.stderr}")
    report = json.loads(proc.stdout)
    db = sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True)
    released = db.execute("SELECT COUNT(*), COUNT(DISTINCT sop_instance_uid) FROM releases "
                          "WHERE state = 'packaged'").fetchone()
    held_files = db.execute("SELECT COUNT(*) FROM duplicate_files WHERE verdict = 'conflict'").fetchone()[0]
    identical = db.execute("SELECT COUNT(*) FROM duplicate_files WHERE verdict = 'identical'").fetchone()[0]
    held_studies = db.execute("SELECT COUNT(*) FROM held_studies").fetchone()[0]
    files = args.patients * args.slices + args.copies
    expected = args.patients * args.slices - args.conflicts - (args.slices if args.fault else 0)
    result = {
        "machine": machine(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": files, "studies": args.patients, "image_size": args.size, "workers": args.workers,
        "exit_code": proc.returncode, "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mb_largest_process": after.ru_maxrss // 1024,
        "stages_s": report["seconds"], "released_instances": released[0], "distinct_uids_released": released[1],
        "expected_releasable": expected, "held_back_files": held_files, "identical_copies_released_once": identical,
        "held_back_studies": held_studies, "batches": report["release"]["batches"],
        "acknowledged": report["upload"]["acknowledged"],
    }
    ok = (released[0] == released[1] == expected and held_files == args.conflicts and identical == args.copies
          and held_studies == int(args.fault) and proc.returncode == 19)
    result["everything_releasable_released"] = ok
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not ok:
        sys.exit("the run did not release exactly what was releasable")


if __name__ == "__main__":
    main()
