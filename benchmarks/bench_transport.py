"""Transport benchmark: one batch to a drop folder and to a local tus server (@tus/server).

Run: python benchmarks/bench_transport.py [--mib 512] [--chunk-mib 8]
Needs `npm ci --prefix tests/tus-server`. Each upload runs in its own process so its peak
RSS is measured alone. Loopback numbers bound the client's own cost; real links are slower.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from transport_fixtures import TusServer, make_batch

DRIVER = """
import sys
from pathlib import Path
from sfr_gateway.ledger import open_ledger
from sfr_gateway.transport.state import SqliteUploadState
from sfr_gateway.transport import TransportSettings, destination_for
db, url, path, batch_id, sha, size, chunk, checksum = sys.argv[1:]
settings = TransportSettings(chunk_size=int(chunk), checksum=checksum == "1")
with open_ledger(Path(db)) as led, destination_for(url, settings) as dest:
    dest.send(Path(path), batch_id, sha, int(size), SqliteUploadState(led, url))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork/exec
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
"""


def run(db: Path, url: str, batch, chunk: int, checksum: bool) -> tuple[float, int]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", DRIVER, str(db), url, str(batch.path), batch.batch_id, batch.sha256,
                          str(batch.size), str(chunk), "1" if checksum else "0"], check=True, capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    wall = time.perf_counter() - t
    return wall, int(out.stdout.strip())  # peak RSS of the uploading process alone, MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--chunk-mib", type=int, default=8)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        mb = args.mib * 1024 * 1024 / 1e6
        for name, server_args, checksum in (("tus", (), False), ("tus+checksum", ("--checksum",), True)):
            batch = make_batch(tmpdir / "outbox", f"B-{name}", args.mib * 1024 * 1024)
            server = TusServer(tmpdir / name, *server_args)
            try:
                wall, rss = run(tmpdir / f"{name}.db", server.url, batch, args.chunk_mib * 1024 * 1024, checksum)
            finally:
                server.stop()
            results[name] = {"seconds": round(wall, 2), "MB/s": round(mb / wall, 1), "peak_rss_MB": rss}
            batch.path.unlink()
        batch = make_batch(tmpdir / "outbox", "B-drop", args.mib * 1024 * 1024)
        (tmpdir / "drop").mkdir()
        wall, rss = run(tmpdir / "drop.db", (tmpdir / "drop").as_uri(), batch, 0, False)
        results["file drop"] = {"seconds": round(wall, 2), "MB/s": round(mb / wall, 1), "peak_rss_MB": rss}
    print(json.dumps({"batch_MiB": args.mib, "chunk_MiB": args.chunk_mib, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
