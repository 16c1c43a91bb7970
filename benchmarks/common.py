"""Shared benchmark helpers: generated exports cached on disk, timing, peak RSS of children."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from sfr_gateway.sample import generate_export

OUT = Path(__file__).parent / "out"

# The floor every de-identifier is compared with: a plain pydicom read and write of every file
# (run as ``python -c PYDICOM_FLOOR SRC DST``).
PYDICOM_FLOOR = r"""
import os, sys, pydicom
src, dst = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(src):
    for name in files:
        path = os.path.join(root, name)
        ds = pydicom.dcmread(path)
        out = os.path.join(dst, os.path.relpath(path, src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        ds.save_as(out)
"""
GATEWAY = [sys.executable, "-m", "sfr_gateway"]


def byte_compile(tree: Path | None = None) -> None:
    """Byte-compile the ``sfr_gateway`` package (of ``tree``, default this checkout) as ``pip
    install`` does for an installed package and for the peers: an editable install run under
    ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module from source at every start
    (about 60 ms per process here). Up-to-date files are left alone."""
    root = tree or Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "sfr_gateway")], check=True,
                   stdout=subprocess.DEVNULL)


def cached_export(name: str, **kwargs: object) -> Path:
    """Generate a synthetic export once (by name) and reuse it across benchmark runs."""
    root = OUT / name
    stamp = root / ".complete.json"
    if stamp.exists() and json.loads(stamp.read_text()) == kwargs:
        return root / "export"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    t = time.perf_counter()
    export = generate_export(root / "export", **kwargs)  # type: ignore[arg-type]
    print(f"generated {len(export.files)} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    stamp.write_text(json.dumps(kwargs))
    return root / "export"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in MB of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before) // 1024


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def files_and_bytes(root: Path) -> tuple[int, int]:
    n = size = 0
    for p in root.rglob("*"):
        if p.is_file():
            n += 1
            size += p.stat().st_size
    return n, size
