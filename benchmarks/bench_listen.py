"""`listen` throughput: dcmtk's storescu sending a generated CT series on loopback to the
gateway's listener, against the same storescu into dcmtk's storescp on the same machine.

    python benchmarks/bench_listen.py [--slices 300] [--repeat 5]

Each round starts both receivers afresh (empty output folders), sends the whole series with one
association (`storescu +sd +r`) and times the sender from start to exit: every C-STORE answered,
so for the gateway every file durable (temp, fsync, rename, fsync) before its answer; storescp
writes without fsync (``+B``: the bytes as received, no re-encoding). Rounds are interleaved; medians are reported with the ratio
gateway / storescp in instances per second. Results: ``benchmarks/results/listen.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import GATEWAY, OUT, byte_compile, cached_export, files_and_bytes, machine

RESULTS = Path(__file__).parent / "results"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # dcmtk's tools, not pynetdicom's apps


def tool(name: str) -> str:
    path = shutil.which(name, path=SYSTEM_PATH)
    if not path:
        sys.exit(f"{name} not found: apt-get install dcmtk")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(port: int, called: str, export: Path) -> float:
    t = time.perf_counter()
    subprocess.run([tool("storescu"), "-aet", "STORESCU", "-aec", called, "+sd", "+r", "127.0.0.1", str(port),
                    str(export)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def gateway_round(home: Path, export: Path) -> float:
    shutil.rmtree(home / "incoming", ignore_errors=True)
    proc = subprocess.Popen([*GATEWAY, "--home", str(home), "listen", "--port", "0", "--bind", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        port = int(line[0].split()[2].rsplit(":", 1)[1].rstrip(";"))
        return send(port, "SFR_GATEWAY", export)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def storescp_round(folder: Path, export: Path, *options: str) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen([tool("storescp"), "-aet", "STORESCP", "+xa", *options, "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([tool("echoscu"), "-aec", "STORESCP", "127.0.0.1", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("storescp did not start")
            time.sleep(0.1)
        return send(port, "STORESCP", export)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    byte_compile()
    export = cached_export(f"listen-{args.slices}", patients=1, rows=512, cols=512, slices=args.slices, extras=False)
    files, size = files_and_bytes(export)
    work = OUT / "listen-work"
    home = work / "home"
    if not (home / "config.toml").exists():
        subprocess.run([*GATEWAY, "--home", str(home), "init", "--site-id", "BENCH"], check=True,
                       stdout=subprocess.DEVNULL)
        text = (home / "config.toml").read_text().replace("\n[dicom]\n", '\n[dicom]\nallowed_aes = ["STORESCU"]\n', 1)
        (home / "config.toml").write_text(text)
    times: dict[str, list[float]] = {"sfr-gateway listen": [], "dcmtk storescp": [], "dcmtk storescp +B": []}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        times["sfr-gateway listen"].append(gateway_round(home, export))
        times["dcmtk storescp"].append(storescp_round(work / "storescp", export))
        times["dcmtk storescp +B"].append(storescp_round(work / "storescp", export, "+B"))  # writes the bytes as received
        print({k: round(v[-1], 3) for k, v in times.items()}, file=sys.stderr)
    load_after = os.getloadavg()
    rows = []
    for name, walls in times.items():
        wall = statistics.median(walls)
        rows.append({"receiver": name, "wall_s": round(wall, 3), "instances_per_s": round(files / wall, 1),
                     "mb_per_s": round(size / 1e6 / wall, 1), "walls": [round(w, 3) for w in walls]})
    ratio = rows[0]["instances_per_s"] / rows[1]["instances_per_s"]
    ratio_b = rows[0]["instances_per_s"] / rows[2]["instances_per_s"]
    result = {
        "files": files, "bytes": size, "repeat": args.repeat, "machine": machine(),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
        "ratio_gateway_over_storescp": round(ratio, 3), "ratio_gateway_over_storescp_bit_preserving": round(ratio_b, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"listen{('-' + args.tag) if args.tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"{files} instances, {size / 1e6:.0f} MB (512x512 CT), storescu on loopback, median of {args.repeat} "
        f"interleaved rounds; {machine()}; load {result['load_before']} / {result['load_after']}; {result['date']}.",
        "",
        "| receiver | wall s | instances/s | MB/s |",
        "|---|---:|---:|---:|",
        *[f"| {r['receiver']} | {r['wall_s']} | {r['instances_per_s']} | {r['mb_per_s']} |" for r in rows],
        "",
        f"gateway / storescp (instances/s): **{ratio:.2f}**; gateway / storescp +B: **{ratio_b:.2f}**",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
