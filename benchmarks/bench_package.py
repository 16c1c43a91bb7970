"""Packaging benchmark: age encryption + signature throughput, batch (tar+zstd+age+sign) throughput,
peak RSS, and the zstd compression ratio on synthetic CT from ``sfr_gateway.sample``.

Run: ``python benchmarks/bench_package.py [--size-mb 1024] [--levels 1,3] [--threads 0,2]``.
Each measurement runs in a fresh child process so its peak RSS (ru_maxrss) is its own.
Results are printed as a table and written as JSON to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1_000_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (zstd workers and the hash thread too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ct_corpus(workdir: Path, target_mb: int) -> list[bytes]:
    """Synthetic 512x512 CT slices as DICOM bytes (about ``target_mb`` MB), cached on disk."""
    from sfr_gateway import sample

    export = workdir / "export"
    if not export.exists():
        sample.generate_export(export, patients=2, rows=512, cols=512, slices=max(4, target_mb // 4))
    files = sorted(p for p in export.rglob("*") if p.is_file() and p.stat().st_size > 400_000)
    out, total = [], 0
    for p in files:
        if total >= target_mb * MB:
            break
        data = p.read_bytes()
        out.append(data)
        total += len(data)
    return out


def child_encrypt_sign(size_mb: int, workdir: str) -> dict[str, float]:
    """age-encrypt ``size_mb`` MB of pseudo-random stream to a file, hashing it, then sign."""
    from sfr_gateway.batch.write import hash_file
    from sfr_gateway.crypto import age, sign

    recipients = [age.Identity.generate().recipient, age.Identity.generate().recipient]
    key = sign.generate_signing_key()
    block = os.urandom(1 << 20)
    total = size_mb * MB
    path = Path(workdir) / "stream.age"
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    with open(path, "w+b") as fh:
        with age.Encryptor(fh, recipients) as enc:
            done = 0
            while done < total:
                n = min(len(block), total - done)
                enc.write(block[:n])
                done += n
        fh.flush()
        sha256, blake2b, _ = hash_file(fh)  # as write_batch does: the whole file, once written
        os.fsync(fh.fileno())
    sign.sign_digest(blake2b.digest(), key, f"sha256:{sha256.hexdigest()}")
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    path.unlink()
    return {"mb": size_mb, "seconds": elapsed, "mb_per_s": size_mb / elapsed, "cpu_seconds": cpu,
            "mb_per_cpu_s": size_mb / cpu, "peak_rss_mb": _peak_rss_mb()}


def child_batch(size_mb: int, workdir: str, level: int, threads: int) -> dict[str, float]:
    """write_batch of ``size_mb`` MB of synthetic CT DICOM files (corpus cycled, unique names)."""
    from sfr_gateway.batch import write as package
    from sfr_gateway.crypto import age, sign

    corpus = _ct_corpus(Path(workdir), min(size_mb, 64))
    rss_before = _peak_rss_mb()
    recipients = [age.Identity.generate().recipient, age.Identity.generate().recipient]
    key = sign.generate_signing_key()
    total = size_mb * MB

    def members():  # type: ignore[no-untyped-def]
        done, i = 0, 0
        while done < total:
            data = corpus[i % len(corpus)]
            yield f"study/series/{i:06d}.dcm", data
            done += len(data)
            i += 1

    outbox = Path(workdir) / f"outbox-{level}-{threads}-{os.getpid()}"
    info = package.BatchInfo(site="BENCH", batch_id="bench", profile="sfr-covid", ps315_edition="2026d")
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    count, done = 0, 0
    while done < total:  # how many members() yields: the room kept for the manifest
        done += len(corpus[count % len(corpus)])
        count += 1
    min_match, hash_log = _tuning(level)
    result = package.write_batch(outbox, info, members(), recipients, key, zstd_level=level, zstd_threads=threads,
                                 zstd_min_match=min_match, zstd_hash_log=hash_log, expected_files=count)
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    result.path.unlink()
    result.signature_path.unlink()
    outbox.rmdir()
    return {
        "level": level,
        "threads": threads,
        "mb": result.plaintext_bytes / MB,
        "seconds": elapsed,
        "mb_per_s": result.plaintext_bytes / MB / elapsed,
        "cpu_seconds": cpu,
        "mb_per_cpu_s": result.plaintext_bytes / MB / cpu,
        "ratio": result.compressed_bytes / result.tar_bytes,
        "age_bytes": result.size,
        "peak_rss_mb": _peak_rss_mb(),
        "corpus_rss_mb": rss_before,
    }


def child_ratio(workdir: str, level: int, threads: int) -> dict[str, float]:
    """zstd alone on the CT corpus: ratio and MB/s (no tar, no encryption)."""
    from sfr_gateway.batch.write import compressor

    corpus = b"".join(_ct_corpus(Path(workdir), 64))
    cctx = compressor(level, threads, *_tuning(level))
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    out = cctx.compress(corpus)
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
    return {"level": level, "threads": threads, "mb": len(corpus) / MB, "ratio": len(out) / len(corpus),
            "mb_per_s": len(corpus) / MB / elapsed, "mb_per_cpu_s": len(corpus) / MB / cpu}


def _tuning(level: int) -> tuple[int, int]:
    """The shipped ``[batch]`` zstd_min_match/zstd_hash_log at the shipped level, the level's own otherwise."""
    from sfr_gateway.home.config import ZstdSettings

    shipped = ZstdSettings()
    return (shipped.min_match, shipped.hash_log) if level == shipped.level else (0, 0)


def _spawn(kind: str, **kw: object) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", json.dumps({"kind": kind, **kw})]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="stream/batch size in MB (default 1024)")
    parser.add_argument("--levels", default="1,3", help="zstd levels to compare (default 1,3)")
    parser.add_argument("--threads", default="0", help="zstd worker threads to compare (default 0)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        kind = spec.pop("kind")
        fn = {"encrypt": child_encrypt_sign, "batch": child_batch, "ratio": child_ratio}[kind]
        print(json.dumps(fn(**spec)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-package-"))
    workdir.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    threads = [int(x) for x in args.threads.split(",")]
    results: dict[str, object] = {"cpus": os.cpu_count(), "load_avg_before": os.getloadavg()}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (wall MB/s suffers when the machine is busy;"
          " MB per CPU-second does not)")

    enc = _spawn("encrypt", size_mb=args.size_mb, workdir=str(workdir))
    results["encrypt_sign"] = enc
    print(f"age encrypt (2 recipients) + SHA-256 + BLAKE2b + sign, {enc['mb']:.0f} MB: "
          f"{enc['mb_per_s']:.0f} MB/s wall, {enc['mb_per_cpu_s']:.0f} MB per CPU-second, peak RSS {enc['peak_rss_mb']:.0f} MB")
    ratios = [_spawn("ratio", workdir=str(workdir), level=lv, threads=th) for lv in levels for th in threads]
    results["zstd"] = ratios
    for r in ratios:
        print(f"zstd level {r['level']} threads {r['threads']} on {r['mb']:.0f} MB synthetic CT: "
              f"ratio {r['ratio']:.3f} ({1 / r['ratio']:.2f}x), {r['mb_per_s']:.0f} MB/s wall, "
              f"{r['mb_per_cpu_s']:.0f} MB per CPU-second")
    batches = [_spawn("batch", size_mb=args.size_mb, workdir=str(workdir), level=lv, threads=th)
               for lv in levels for th in threads]
    results["batch"] = batches
    for b in batches:
        print(f"write_batch (tar+zstd {b['level']}/{b['threads']}t+age+sign) {b['mb']:.0f} MB CT: "
              f"{b['mb_per_s']:.0f} MB/s wall, {b['mb_per_cpu_s']:.0f} MB per CPU-second, "
              f"ratio {b['ratio']:.3f}, peak RSS {b['peak_rss_mb']:.0f} MB "
              f"(of which the in-memory 64 MB test corpus ~{b['corpus_rss_mb']:.0f} MB)")
    results["load_avg_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
