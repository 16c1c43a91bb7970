"""Bytes on the uplink against CPU, on real CT and MR (issue 20): [batch] image_compression on and off.

Usage::

    python benchmarks/bench_uplink.py [--rounds 7] [--week-gb 25 50] [--uplinks 20 50 100]
        [--run-mb-s-on X --run-mb-s-off Y] [--tag TAG]

The project cannot ship patient data, so the images are the public test files that packages on
PyPI carry: pydicom-data's and pydicom's own real CT (``693_UNCR.dcm``, ``693_UNCI.dcm``,
``eCT_Supplemental.dcm``, ``CT_small.dcm``) and MR (``MR2_UNCR.dcm``, ``MR2_UNCI.dcm``,
``emri_small.dcm``, ``MR_small.dcm``, ``MR-SIEMENS-DICOM-WithOverlays.dcm``). Each set goes
through the release path in this process, as ``run`` does it: de-identified with the ``basic``
profile (pixels left in place), re-encoded or not (``deid.recode``), packaged by ``write_batch``
(tar, zstd with the shipped ``[batch]`` settings, age, minisign). Reported per set and setting:
batch bytes / the images' uncompressed pixel bytes (per set; and for each real CT image, its
released file compressed as in a batch), and CPU seconds per GB of input (this
process's user + system time, median of ``--rounds`` interleaved rounds: the settings alternate
within each round). JPEG 2000 Lossless (openjpeg, through ``pylibjpeg-openjpeg``) is measured
beside when that package is installed (it is not a dependency): its code stream ratio and CPU.

The delivery-time table: a week's export of ``--week-gb`` GB through an uplink of ``--uplinks``
Mbit/s takes max(CPU time, bytes on the wire / uplink), the CPU time being the export at the
``run`` throughput measured by ``bench_throughput.py --image-variants`` on 2 cores
(``--run-mb-s-on``/``--run-mb-s-off``; without them, from this benchmark's own CPU seconds per GB
spread over 2 cores), the bytes on the wire the real-CT ratio. Results:
``benchmarks/results/uplink[-TAG].md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pydicom  # noqa: E402

from sfr_gateway.batch.tarzst import FileMember  # noqa: E402
from sfr_gateway.batch.write import BatchInfo, compressor, write_batch  # noqa: E402
from sfr_gateway.crypto import age, sign  # noqa: E402
from sfr_gateway.deid import Pseudonymizer, PseudonymKeys, compile_plan, load_profile  # noqa: E402
from sfr_gateway.deid.files import deidentify_file  # noqa: E402
from sfr_gateway.deid.recode import geometry, native_pixels, reencode  # noqa: E402
from sfr_gateway.home.config import ZstdSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETS = {
    "real CT": ["693_UNCR.dcm", "693_UNCI.dcm", "eCT_Supplemental.dcm", "CT_small.dcm"],
    "real MR": ["MR2_UNCR.dcm", "MR2_UNCI.dcm", "emri_small.dcm", "MR_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"],
}
SETTINGS = ("none", "jpeg-ls")


def data_file(name: str) -> Path:
    """A test file of pydicom-data or of pydicom itself (never downloaded)."""
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        folders.insert(0, Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"{name}: not found (pip install pydicom-data)")


def package(paths: list[Path], setting: str, plan: Any, pz: Any, outbox: Path, keys: tuple[Any, Any],
            counter: list[int]) -> tuple[int, int]:
    """Release ``paths`` into one batch as ``run`` does; return (batch bytes, pixel bytes)."""
    members: list[Any] = []
    pixel_bytes = 0
    for i, path in enumerate(paths):
        result = deidentify_file(path, plan, pz, record=False, pixels_in_place=True)
        g = geometry(result.dataset)
        value = native_pixels(result) if g is None else None
        pixel_bytes += g.nbytes if g is not None else len(value or b"")
        recoded = reencode(result, setting) if setting != "none" else None
        name = f"{i}/{path.name}"
        if recoded is not None:
            members.append((name, recoded.data, recoded.manifest_entry()))
        elif result.pixels is not None:
            ref = result.pixels
            assert result.head is not None
            members.append((name, FileMember(result.head, ref.open_checked(), ref.offset, ref.length),
                            {"transfer_syntax": result.transfer_syntax}))
        else:
            assert result.data is not None
            members.append((name, result.data, {"transfer_syntax": result.transfer_syntax}))
    counter[0] += 1
    z = ZstdSettings()
    info = BatchInfo(site="BENCH01", batch_id=f"b-{counter[0]}", profile="basic")
    out = write_batch(outbox, info, members, [keys[0].recipient], keys[1], zstd_level=z.level, zstd_threads=z.threads,
                      zstd_min_match=z.min_match, zstd_hash_log=z.hash_log, expected_files=len(members))
    size = out.size
    out.path.unlink()
    out.signature_path.unlink()
    return size, pixel_bytes


def one_image(path: Path, plan: Any, pz: Any) -> dict[str, Any]:
    """One image's released file, zstd-compressed with the shipped ``[batch]`` settings, over its
    pixel bytes, per setting: what the image itself costs in a batch's payload. A batch adds its
    own overhead once (the manifest, its zstd frame padded to a whole 64 KiB age chunk, the
    signature): the per-set ratios include it, a study of hundreds of images makes it negligible."""
    z = ZstdSettings()
    row: dict[str, Any] = {"file": path.name}
    for setting in SETTINGS:
        result = deidentify_file(path, plan, pz, record=False, pixels_in_place=True)
        g = geometry(result.dataset)
        native = native_pixels(result)
        row["pixel_bytes"] = g.nbytes if g is not None else len(native or b"")
        recoded = reencode(result, setting) if setting != "none" else None
        if recoded is not None:
            data = recoded.data
        elif result.pixels is not None:
            assert result.head is not None and native is not None
            data = result.head + native
        else:
            assert result.data is not None
            data = result.data
        cctx = compressor(z.level, 0, z.min_match, z.hash_log)
        row[f"{setting}_ratio"] = round(len(cctx.compress(data)) / row["pixel_bytes"], 3)
    return row


def j2k(paths: list[Path]) -> dict[str, float] | None:
    """JPEG 2000 Lossless (openjpeg) code stream ratio and CPU s per GB, when pylibjpeg-openjpeg is installed."""
    try:
        import openjpeg
    except ImportError:
        return None
    coded = raw = 0
    cpu = 0.0
    for path in paths:
        arr = pydicom.dcmread(path).pixel_array
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]
        t = time.process_time()
        for frame in frames:
            coded += len(openjpeg.encode_array(frame, bits_stored=int(ds.BitsStored)))
        cpu += time.process_time() - t
        raw += arr.nbytes
    return {"ratio": coded / raw, "cpu_s_per_gb": cpu / (raw / 1e9)}


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def delivery(week_gb: float, ratio: float, mb_s: float, mbit: float) -> tuple[float, float, float]:
    """(CPU hours, upload hours, delivery hours = max of the two) for a week's export."""
    cpu_h = week_gb * 1e3 / mb_s / 3600
    up_h = week_gb * 1e9 * ratio * 8 / (mbit * 1e6) / 3600
    return cpu_h, up_h, max(cpu_h, up_h)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--week-gb", type=float, nargs="+", default=[25.0, 50.0])
    parser.add_argument("--uplinks", type=float, nargs="+", default=[20.0, 50.0, 100.0], help="Mbit/s")
    parser.add_argument("--run-mb-s-on", type=float, default=0.0, help="`run` MB/s with jpeg-ls (bench_throughput)")
    parser.add_argument("--run-mb-s-off", type=float, default=0.0, help="`run` MB/s with none (bench_throughput)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    import warnings

    warnings.simplefilter("ignore")
    plan = compile_plan(load_profile("basic"))
    pz = Pseudonymizer(PseudonymKeys(bytes(range(32)), "BENCH01"), offset_range=plan.offset_range)
    keys = (age.Identity.generate(), sign.generate_signing_key())
    sets = {name: [data_file(n) for n in names] for name, names in SETS.items()}
    loads = [load()]
    cpu: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    counter = [0]
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Path(tmp)
        for _ in range(args.rounds):
            for set_name, paths in sets.items():
                for setting in SETTINGS:  # interleaved: both settings in every round
                    t = time.process_time()
                    sizes[set_name, setting] = package(paths, setting, plan, pz, outbox, keys, counter)
                    cpu.setdefault((set_name, setting), []).append(time.process_time() - t)
        per_file = [one_image(path, plan, pz) for path in sets["real CT"]]
    loads.append(load())
    rows = []
    for set_name, paths in sets.items():
        input_bytes = sum(p.stat().st_size for p in paths)
        for setting in SETTINGS:
            batch, pixels = sizes[set_name, setting]
            seconds = statistics.median(cpu[set_name, setting])
            rows.append({"set": set_name, "setting": setting, "files": len(paths), "input_bytes": input_bytes,
                         "pixel_bytes": pixels, "batch_bytes": batch, "ratio": round(batch / pixels, 3),
                         "cpu_s_per_gb": round(seconds / (input_bytes / 1e9), 1)})
        other = j2k(paths)
        if other:
            rows.append({"set": set_name, "setting": "JPEG 2000 Lossless code stream alone (openjpeg; not shipped)",
                         "ratio": round(other["ratio"], 3), "cpu_s_per_gb": round(other["cpu_s_per_gb"], 1)})
    ct = {r["setting"]: r for r in rows if r["set"] == "real CT"}
    mb_s = {"jpeg-ls": args.run_mb_s_on or 2 * 1e3 / ct["jpeg-ls"]["cpu_s_per_gb"],
            "none": args.run_mb_s_off or 2 * 1e3 / ct["none"]["cpu_s_per_gb"]}
    table = []
    for gb in args.week_gb:
        for mbit in args.uplinks:
            cells = {s: delivery(gb, ct[s]["ratio"], mb_s[s], mbit) for s in SETTINGS}
            table.append({"week_gb": gb, "uplink_mbit_s": mbit,
                          **{f"{s}_{k}": round(v, 2) for s in SETTINGS for k, v in zip(("cpu_h", "upload_h", "hours"),
                                                                                       cells[s], strict=True)}})
    doc = {"rows": rows, "per_file": per_file, "delivery": table, "run_mb_s": mb_s, "rounds": args.rounds, "load_average": loads,
           "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "uplink" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"Real images (public test files), median of {args.rounds} interleaved rounds; {doc['machine']}; "
             f"load average before/after: {loads[0]} / {loads[1]}; {doc['date']}.", "",
             "| images | setting | files | pixel bytes | batch bytes | batch / pixel bytes | CPU s per GB of input |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['setting']} | {r.get('files', '')} | {r.get('pixel_bytes', '')} | "
                     f"{r.get('batch_bytes', '')} | {r['ratio']} | {r['cpu_s_per_gb']} |")
    lines += ["", "Each real CT image: its released file zstd-compressed with the shipped `[batch]` settings / its "
              "pixel bytes (a batch's own overhead, its manifest padded to a 64 KiB age chunk, is in the per-set "
              "ratios above, once per batch):", "",
              "| image | pixel bytes | none | jpeg-ls |", "|---|---:|---:|---:|"]
    lines += [f"| {f['file']} | {f['pixel_bytes']} | {f['none_ratio']} | {f['jpeg-ls_ratio']} |" for f in per_file]
    lines += ["", f"Delivery of a week's export = max(CPU time, bytes on the wire / uplink); CPU time at `run` "
              f"{mb_s['none']:.0f} MB/s (none) and {mb_s['jpeg-ls']:.0f} MB/s (jpeg-ls) of input; bytes at the real-CT "
              f"ratios {ct['none']['ratio']} and {ct['jpeg-ls']['ratio']}.", "",
              "| week's export | uplink | none: upload h | none: delivery h | jpeg-ls: CPU h | jpeg-ls: upload h "
              "| jpeg-ls: delivery h | jpeg-ls / none |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in table:
        lines.append(f"| {t['week_gb']:.0f} GB | {t['uplink_mbit_s']:.0f} Mbit/s | {t['none_upload_h']:.2f} | "
                     f"{t['none_hours']:.2f} | {t['jpeg-ls_cpu_h']:.2f} | {t['jpeg-ls_upload_h']:.2f} | "
                     f"{t['jpeg-ls_hours']:.2f} | {t['jpeg-ls_hours'] / t['none_hours']:.2f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
