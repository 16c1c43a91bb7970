"""Throughput benchmark: sfr-gateway against `cp -r`, the pydicom floor and the peers, in one run.

Usage (one command; the first run generates the export and installs the peers)::

    python benchmarks/bench_throughput.py [--slices 600] [--patients 2] [--repeat 3]
        [--only NAME ...] [--skip NAME ...] [--no-install] [--tag TAG]

The export is ``--patients`` x 1 chest-CT study x 1 axial series x ``--slices / --patients``
slices of 512 x 512 (seeded, ``sfr_gateway.sample.generate_export(..., extras=False)``),
cached under ``benchmarks/out/``. Peers are installed into their own venv
(``benchmarks/out/peers-venv``: dicognito, deid, dicom-anonymizer, matplotlib for the chart);
gdcmanon (Debian ``libgdcm-tools``) and PixelMed (Debian ``pixelmed-apps``) are used when
installed (``--apt`` installs them when running as root); a peer that cannot be had is skipped
and the report says so.

Every contender runs as a child process, in the same order in every round (interleaved), with
a warm page cache; each one's outputs are deleted after it and the disk synced before the next
one starts (no contender pays for another's writeback); the figures are medians of
``--repeat`` rounds. Reported per contender:
wall seconds, CPU seconds (user + system of the whole process tree), files/s, MB/s, ratios to
``cp -r`` and to the pydicom read/write floor, peak RSS of the largest single process
(``wait4`` ru_maxrss) and of the whole tree (sum, polled from /proc every 50 ms).
Results: ``benchmarks/results/throughput[-TAG].md`` / ``.json`` / ``.png``.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYDICOM_FLOOR as FLOOR  # noqa: E402
from common import byte_compile  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = HERE / "results"
PEERS_VENV = OUT / "peers-venv"
PEER_PACKAGES = ["dicognito", "deid", "dicom-anonymizer", "matplotlib"]
PIXELMED_JARS = [Path("/usr/share/java/pixelmed.jar"), Path("/usr/share/java/pixelmed_imageio.jar")]
GATEWAY = [sys.executable, "-m", "sfr_gateway"]

HEADER_COPY = r"""
import io, os, shutil, sys, pydicom
src, dst = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(src):
    for name in files:
        path = os.path.join(root, name)
        out = os.path.join(dst, os.path.relpath(path, src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(path, "rb") as fh, open(out, "wb") as fo:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            pos = fh.tell()
            buf = io.BytesIO()
            ds.save_as(buf)
            fo.write(buf.getvalue())
            fh.seek(pos)
            shutil.copyfileobj(fh, fo, 1 << 20)
"""

DEID_PEER = r"""
import os, sys, logging
logging.disable(logging.CRITICAL)
from deid.dicom import replace_identifiers
src, dst = sys.argv[1], sys.argv[2]
files = [os.path.join(r, n) for r, _, fs in os.walk(src) for n in fs]
os.makedirs(dst, exist_ok=True)
replace_identifiers(dicom_files=files, save=True, output_folder=dst, overwrite=True)
"""

CHART = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
res = json.load(open(sys.argv[1]))
rows = res["rows"][::-1]
floor_cpu = next(r["cpu_seconds"] for r in res["rows"] if r["name"].startswith("pydicom read/write"))
names = [r["name"] for r in rows]
wall = [r["x_floor"] for r in rows]
cpu = [r["cpu_seconds"] / floor_cpu for r in rows]
ys = range(len(rows))
fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.4))
ours = ["deidentify" in n or "sfr-gateway" in n for n in names]
ax.barh([y + 0.2 for y in ys], wall, height=0.4, color=["#c0392b" if o else "#7f8c8d" for o in ours],
        label="wall time / floor wall time")
ax.barh([y - 0.2 for y in ys], cpu, height=0.4, color=["#e6a39b" if o else "#c8cccd" for o in ours],
        label="CPU time / floor CPU time")
ax.set_yticks(list(ys), names, fontsize=8)
ax.axvline(1.0, color="black", lw=0.8, ls="--")
for y, r, w in zip(ys, rows, wall):
    label = f"{w:.2f}x  {r['seconds']:.1f} s  {r['cpu_seconds']:.1f} CPU-s  {r['rss_max_mb']:.0f} MB"
    ax.text(w + 0.05, y + 0.2, label, va="center", fontsize=7)
ax.set_xlabel("ratio to the pydicom read+write floor (lower is better; median of %d rounds)" % res["repeat"], fontsize=8)
title = "%d files, %.0f MB; %s; load average %s" % (
    res["files"], res["megabytes"], res["machine_short"], res["load_average"][0])
ax.set_title(title, fontsize=9)
ax.set_xlim(0, max(wall + cpu) * 1.6)
ax.legend(fontsize=7, loc="lower right")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"""


@dataclass
class Contender:
    """One thing to time: a name, a command builder, an optional per-round setup."""

    name: str
    argv: list[str]
    out: Path
    setup: list[list[str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_max: float = 0.0
    rss_tree: float = 0.0
    files_out: int = -1
    wire_bytes: int = -1
    peer: bool = False


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the export -------------------------------------------------------------------------------
def export(patients: int, slices: int, seed: int) -> tuple[Path, Path]:
    """Generate (once, cached) the export; return (export dir, consent CSV)."""
    from sfr_gateway.sample import generate_export

    root = OUT / f"throughput-{patients}p-{slices}s-seed{seed}"
    stamp = root / ".complete.json"
    params = {"patients": patients, "slices": slices, "seed": seed, "rows": 512, "cols": 512}
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return root / "export", root / "consent.csv"
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    per_series = max(1, slices // patients)
    result = generate_export(root / "export", patients=patients, seed=seed, rows=512, cols=512,
                             slices=per_series, extras=False)
    lines = ["patient_id;issuer;status;date;source;reference"]
    lines += [f"{p.patient_id};{p.issuer};consented;2020-03-02;form;BENCH-{i:04d}" for i, p in enumerate(result.patients)]
    (root / "consent.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"generated {len(result.files)} files in {time.perf_counter() - t:.1f} s")
    stamp.write_text(json.dumps(params))
    return root / "export", root / "consent.csv"


# -- peers --------------------------------------------------------------------------------------
def peers_python(install: bool) -> Path | None:
    """The peers' venv python (created and filled on first use), or None."""
    py = PEERS_VENV / "bin" / "python"
    if not py.exists():
        if not install:
            return None
        log("creating the peers venv (dicognito, deid, dicom-anonymizer, matplotlib) ...")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    if install:
        missing = [p for p in PEER_PACKAGES if subprocess.run(
            [str(py), "-m", "pip", "show", "-q", p], capture_output=True).returncode != 0]
        if missing:
            r = subprocess.run([str(py), "-m", "pip", "install", "-q", *missing], capture_output=True, text=True)
            if r.returncode != 0:
                log(f"pip install {' '.join(missing)} failed; those peers are skipped")
    return py


def has_module(py: Path | None, module: str) -> bool:
    if py is None:
        return False
    return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0


def apt_install(packages: list[str]) -> None:
    """Install Debian packages when root and apt has them (skip quietly otherwise)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    for pkg in packages:
        pol = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True).stdout
        if "Candidate: (none)" in pol or "Candidate:" not in pol:
            log(f"apt has no {pkg}")
            continue
        if "Installed: (none)" in pol:
            subprocess.run(["apt-get", "install", "-y", "-q", pkg], capture_output=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def gdcm_cert(work: Path) -> tuple[Path, Path] | None:
    """A throwaway RSA key + self-signed certificate: gdcmanon -e encrypts the removed values to it."""
    key, cert = work / "gdcm.key", work / "gdcm.pem"
    if not cert.exists():
        if not shutil.which("openssl"):
            return None
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-subj", "/CN=bench", "-days", "2"], check=True, capture_output=True)
    return key, cert


# -- measuring -------------------------------------------------------------------------------
def _tree_rss_kb(root: int) -> tuple[int, int]:
    """(sum of RSS, largest VmHWM) over ``root`` and its descendants (one pass over /proc)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            rss[pid] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for c in children.get(frontier.pop(), []):
            if c not in tree:
                tree.add(c)
                frontier.append(c)
    hwm = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
                        break
        except (OSError, ValueError):
            continue
    return sum(rss.get(p, 0) for p in tree), hwm


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, float]:
    """Run ``argv``; return (wall s, CPU s of the tree, max single-process RSS MB, peak tree RSS MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
    peak = [0, 0]
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.05):
            total, hwm = _tree_rss_kb(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], hwm)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    th.join()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} exited {code}: {err.decode(errors='replace')[-400:]}")
    # ru_maxrss keeps the pre-exec size of the forked Python parent; VmHWM (polled) is exact per
    # process but can miss a process shorter than the poll interval: then fall back to ru_maxrss.
    largest = peak[1] if peak[1] else usage.ru_maxrss
    return wall, usage.ru_utime + usage.ru_stime, largest / 1024, peak[0] / 1024


# -- contenders ---------------------------------------------------------------------------
def contenders(src: Path, consent: Path, work: Path, install: bool, skipped: dict[str, str],
               workers: list[int], zstd_variants: bool = False, compare_tree: Path | None = None,
               image_variants: bool = False) -> list[Contender]:
    """Everything to time, in the order each round runs them."""
    py = sys.executable
    out: list[Contender] = [
        Contender("cp -r", ["cp", "-r", str(src), str(work / "cp")], work / "cp"),
        Contender("pydicom read/write (floor)", [py, "-c", FLOOR, str(src), str(work / "floor")], work / "floor"),
        Contender("pydicom header + raw pixel copy", [py, "-c", HEADER_COPY, str(src), str(work / "hdr")], work / "hdr"),
    ]
    if shutil.which("gdcmanon"):
        kc = gdcm_cert(work)
        if kc:
            out.append(Contender("gdcmanon (GDCM, C++)", [
                "gdcmanon", "-e", "-r", "--continue", "-c", str(kc[1]), "-i", str(src), "-o", str(work / "gdcm")],
                work / "gdcm", setup=[["mkdir", "-p", str(work / "gdcm")]]))
        else:
            skipped["gdcmanon"] = "no openssl to make its certificate"
    else:
        skipped["gdcmanon"] = "not installed (Debian libgdcm-tools)"
    java = shutil.which("java")
    if java and all(j.exists() for j in PIXELMED_JARS[:1]):
        cp = ":".join(str(j) for j in PIXELMED_JARS if j.exists())
        redact = work / "pixelmed-redaction.txt"
        redact.write_text("")
        out.append(Contender("PixelMed DeidentifyAndRedact (Java)", [
            java, "-Xmx512m", "-cp", cp, "com.pixelmed.apps.DeidentifyAndRedact", str(src), str(work / "pixelmed"),
            str(redact), "KEEPSAFEPRIVATE", "DONOTADDCONTRIBUTINGEQUIPMENT"], work / "pixelmed",
            setup=[["mkdir", "-p", str(work / "pixelmed")]]))
    else:
        skipped["PixelMed"] = "not installed (Debian pixelmed-apps + a JRE)"
    ppy = peers_python(install)
    bindir = PEERS_VENV / "bin"
    if has_module(ppy, "dicognito"):
        out.append(Contender("dicognito", [str(ppy), "-m", "dicognito", "--output-directory", str(work / "dicognito"),
                                           "--quiet", str(src)],
                             work / "dicognito"))
    else:
        skipped["dicognito"] = "not installable from PyPI here"
    if has_module(ppy, "dicomanonymizer"):
        # dicom-anonymizer reads one folder (not recursive): run it once per series folder.
        loop = ('cd "$1" && find . -type f -printf "%h\\n" | sort -u | while read d; do mkdir -p "$2/$d" && '
                '"$3" "$1/$d" "$2/$d" >/dev/null 2>&1 || exit 1; done')
        out.append(Contender("dicom-anonymizer", ["sh", "-c", loop, "sh", str(src), str(work / "dicomanon"),
                                                  str(bindir / "dicom-anonymizer")], work / "dicomanon"))
    else:
        skipped["dicom-anonymizer"] = "not installable from PyPI here"
    if has_module(ppy, "deid"):
        out.append(Contender("deid (pydicom/deid)", [str(ppy), "-c", DEID_PEER, str(src), str(work / "deid")],
                             work / "deid"))
    else:
        skipped["deid"] = "not installable from PyPI here"
    home = work / "deid-home"
    if compare_tree:
        env = {"PYTHONPATH": str(compare_tree), "PYTHONDONTWRITEBYTECODE": "1"}
        for w in workers:
            out.append(Contender(f"deidentify -j{w}, code of {compare_tree.name}", [
                *GATEWAY, "--home", str(home), "deidentify", str(src), "--output", str(work / f"cmp{w}"),
                "--workers", str(w), "--json"], work / f"cmp{w}", env=env,
                setup=[["rm", "-rf", str(home / "quarantine")]]))
    for w in workers:
        out.append(Contender(f"sfr-gateway deidentify -j{w}", [
            *GATEWAY, "--home", str(home), "deidentify", str(src), "--output", str(work / f"deid{w}"),
            "--workers", str(w), "--json"], work / f"deid{w}",
            setup=[["rm", "-rf", str(home / "quarantine")]]))
    keyfile = work / "central.key"
    variants = [("", "")] + (ZSTD_VARIANTS if zstd_variants else [])
    if image_variants:
        variants = IMAGE_VARIANTS
    for w in workers:
        for label, sed in variants:
            h = work / f"run-home-{w}{'-' + label.split()[0] if label else ''}"
            setup = [["rm", "-rf", str(h)],
                     [*GATEWAY, "--home", str(h), "init", "--site-id", "BENCH01", "--central-recipient",
                      "@" + str(keyfile), "--export", str(src)],
                     [*GATEWAY, "--home", str(h), "consent", "import", str(consent)]]
            if sed:
                setup.append(["sed", "-i", sed, str(h / "config.toml")])
            out.append(Contender(f"sfr-gateway run -j{w} (drop folder{', ' + label if label else ''})", [
                *GATEWAY, "--home", str(h), "run", "--workers", str(w), "--json"], h, setup=setup))
        if compare_tree:  # the same run with the other checkout's code (HOME made by this one)
            h = work / f"run-home-cmp{w}"
            setup = [["rm", "-rf", str(h)],
                     [*GATEWAY, "--home", str(h), "init", "--site-id", "BENCH01", "--central-recipient",
                      "@" + str(keyfile), "--export", str(src)],
                     [*GATEWAY, "--home", str(h), "consent", "import", str(consent)]]
            out.append(Contender(f"run -j{w} (drop folder), code of {compare_tree.name}", [
                *GATEWAY, "--home", str(h), "run", "--workers", str(w), "--json"], h, setup=setup,
                env={"PYTHONPATH": str(compare_tree), "PYTHONDONTWRITEBYTECODE": "1"}))
    return out


# Same-run comparison of batch compression settings (config.toml [batch] keys).
ZSTD_VARIANTS = [
    ("plain-zstd-1 (before)", "s/^zstd_min_match = .*/zstd_min_match = 0/;s/^zstd_hash_log = .*/zstd_hash_log = 0/"),
    ("zstd-threads 1", "s/^zstd_threads = .*/zstd_threads = 1/"),
]


# Same-run comparison of [batch] image_compression (issue 20): the option on and off, interleaved.
IMAGE_VARIANTS = [
    ("image_compression jpeg-ls", 's/^image_compression = .*/image_compression = "jpeg-ls"/'),
    ("image_compression none", 's/^image_compression = .*/image_compression = "none"/'),
]


def prepare_gateway(work: Path) -> None:
    """The HOME for `deidentify` and the central key for `run` (outside the timings)."""
    home = work / "deid-home"
    if not (home / "config.toml").exists():
        subprocess.run([*GATEWAY, "--home", str(home), "init", "--site-id", "BENCH01"], check=True, capture_output=True)
    keyfile = work / "central.key"
    if not keyfile.exists():
        r = subprocess.run([*GATEWAY, "central", "keygen", "--output", str(keyfile)], check=True,
                           capture_output=True, text=True)
        recipient = next(w for w in r.stdout.split() if w.startswith("age1"))
        (work / "central.recipient").write_text(recipient)


def resolve_setup(c: Contender, work: Path) -> list[list[str]]:
    recipient = (work / "central.recipient").read_text().strip()
    return [[recipient if a == "@" + str(work / "central.key") else a for a in cmd] for cmd in c.setup]


def count_outputs(root: Path) -> int:
    """Files a contender wrote (for `run`: batches in the drop folder; each holds a study)."""
    drop = root / "dropbox"
    if drop.is_dir():
        return sum(1 for p in drop.iterdir() if p.name.endswith(".age"))
    return sum(1 for _, _, fs in os.walk(root) for n in fs if not n.startswith("."))


def run_rounds(cs: list[Contender], work: Path, repeat: int, peers_repeat: int) -> None:
    for r in range(repeat):
        for c in cs:
            if c.peer and r >= peers_repeat:
                continue
            shutil.rmtree(c.out, ignore_errors=True)
            for cmd in resolve_setup(c, work):
                subprocess.run(cmd, check=True, capture_output=True)
            os.sync()  # the previous contender's outputs are on disk: nobody pays for another's writeback
            try:
                wall, cpu, rss_max, rss_tree = measure(c.argv, c.env)
            except RuntimeError as exc:
                log(f"  {c.name}: FAILED ({exc})")
                continue
            c.wall.append(wall)
            c.cpu.append(cpu)
            c.rss_max = max(c.rss_max, rss_max)
            c.rss_tree = max(c.rss_tree, rss_tree)
            c.files_out = count_outputs(c.out)
            c.wire_bytes = sum(p.stat().st_size for p in (c.out / "dropbox").glob("*.age")) if c.name.startswith(
                "sfr-gateway run") else -1
            log(f"  round {r + 1}/{repeat}  {c.name:<38} {wall:7.2f} s wall {cpu:7.2f} s CPU {rss_max:6.0f} MB")
            shutil.rmtree(c.out, ignore_errors=True)
    for c in cs:
        shutil.rmtree(c.out, ignore_errors=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _burn(rounds: int) -> float:
    """CPU-bound work (SHA-256 of a buffer in cache); returns its wall seconds."""
    import hashlib

    block = bytes(1 << 16)
    start = time.perf_counter()
    for _ in range(rounds):
        hashlib.sha256(block).digest()
    return time.perf_counter() - start


def cores_free(rounds: int = 8000) -> float:
    """How many of 2 cores this run can have now: the same CPU-bound work in one process, then in
    two at once; 2 x the first time / the slower of the two (2.0: both cores free, 1.0: about one).
    The load average counts waiting jobs, not what they leave to us (niced ones leave nearly all)."""
    import multiprocessing

    one = _burn(rounds)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        two = max(pool.map(_burn, [rounds, rounds]))
    return round(min(2.0, 2 * one / two), 2)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(cs: list[Contender], files: int, megabytes: float, repeat: int, skipped: dict[str, str],
           tag: str, loads: list[str], cores: list[float]) -> dict[str, object]:
    """Write the Markdown table, the JSON and the chart; return the result document."""
    med = {c.name: statistics.median(c.wall) for c in cs if c.wall}
    cp = med.get("cp -r")
    floor = med.get("pydicom read/write (floor)")
    rows = []
    for c in cs:
        if not c.wall:
            continue
        t = med[c.name]
        rows.append({
            "name": c.name, "seconds": round(t, 3), "cpu_seconds": round(statistics.median(c.cpu), 2),
            "files_per_s": round(files / t, 1), "mb_per_s": round(megabytes / t, 1),
            "x_cp": round(t / cp, 2) if cp else None, "x_floor": round(t / floor, 2) if floor else None,
            "rss_max_mb": round(c.rss_max, 1), "rss_tree_mb": round(c.rss_tree, 1), "files_out": c.files_out,
            "wire_mb": round(c.wire_bytes / 1e6, 1) if c.wire_bytes >= 0 else None,
            "runs": [round(w, 3) for w in c.wall],
        })
    machine = (f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
               f"{platform.system()} {platform.release()}")
    goals = []

    def ratio(a: str, b: str) -> float | None:
        return round(med[a] / med[b], 2) if a in med and b in med else None

    for w in (1, 2):
        d = f"sfr-gateway deidentify -j{w}"
        r = f"sfr-gateway run -j{w} (drop folder)"
        if d in med and floor:
            goals.append((f"deidentify -j{w} / floor", ratio(d, "pydicom read/write (floor)"), 1.0 if w == 1 else 0.6))
        if r in med and d in med:
            goals.append((f"run -j{w} / deidentify -j{w}", ratio(r, d), 1.25))
    doc: dict[str, object] = {
        "files": files, "megabytes": round(megabytes, 1), "repeat": repeat, "machine": machine,
        "machine_short": f"{os.cpu_count()} CPUs, {cpu_model()[:40]}", "load_average": loads, "cores_free": cores,
        "rows": rows, "skipped": skipped,
        "goals": [{"what": g, "measured": m, "goal": lim} for g, m, lim in goals],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "throughput" + (f"-{tag}" if tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"{files} files, {megabytes:.0f} MB ({files} slices 512x512), median of {repeat} interleaved rounds, "
        f"page cache warm; {machine}; load average before/after: {loads[0]} / {loads[-1]}; "
        f"cores free before/after (2 CPU-bound processes' speedup): {cores[0]} / {cores[-1]}; {doc['date']}.",
        "",
        "| contender | wall s | CPU s | files/s | MB/s | × cp -r | × floor | peak RSS (largest process) MB "
        "| peak RSS (tree) MB | files out | MB on the wire | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bold = "**" if str(r["name"]).startswith("sfr-gateway") else ""
        lines.append(f"| {bold}{r['name']}{bold} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['files_per_s']:.0f} | "
                     f"{r['mb_per_s']:.0f} | {_ratio(r['x_cp'])} | {_ratio(r['x_floor'])} | {r['rss_max_mb']:.0f} | "
                     f"{r['rss_tree_mb']:.0f} | {r['files_out']} | {_ratio(r['wire_mb'])} | {len(r['runs'])} |")
    if goals:
        lines += ["", "| goal | measured | target |", "|---|---:|---:|"]
        lines += [f"| {g} | {m} | ≤ {lim} |" for g, m, lim in goals]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    chart(RESULTS / f"{stem}.json")
    print("\n".join(lines))
    return doc


def _ratio(x: object) -> str:
    return "–" if x is None else str(x)  # no such contender in this run (e.g. --skip pydicom)


def chart(result_json: Path) -> None:
    """Draw the PNG bar chart beside the JSON (matplotlib from the peers' venv)."""
    py = PEERS_VENV / "bin" / "python"
    rows = json.loads(result_json.read_text())["rows"]
    if not any(r["name"].startswith("pydicom read/write") for r in rows):
        log("no pydicom floor in this run: no chart")
        return
    if has_module(py if py.exists() else None, "matplotlib"):
        r = subprocess.run([str(py), "-c", CHART, str(result_json), str(result_json.with_suffix(".png"))],
                           capture_output=True, text=True)
        if r.returncode != 0:
            log(f"chart failed: {r.stderr[-300:]}")
    else:
        log("matplotlib not available: no chart")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=600, help="total slices (split over the patients)")
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="substrings of contender names to keep")
    parser.add_argument("--skip", nargs="*", default=[], help="substrings of contender names to drop")
    parser.add_argument("--no-install", action="store_true", help="do not create/fill the peers venv")
    parser.add_argument("--apt", action="store_true", help="apt-get install libgdcm-tools pixelmed-apps (root)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--zstd-variants", action="store_true",
                        help="also time `run` with plain zstd level 1 and with one zstd thread")
    parser.add_argument("--image-variants", action="store_true",
                        help="time `run` with [batch] image_compression jpeg-ls and none (in place of the default)")
    parser.add_argument("--compare-tree", type=Path, default=None,
                        help="also time `deidentify` and `run` with the sfr_gateway of another checkout (e.g. before a change)")
    parser.add_argument("--peers-repeat", type=int, default=1,
                        help="rounds in which the peers run (deid alone takes minutes; default 1)")
    parser.add_argument("--chart", type=Path, default=None, help="only redraw the chart of a result JSON")
    args = parser.parse_args()
    if args.chart:
        chart(args.chart)
        return 0

    if args.apt:
        apt_install(["libgdcm-tools", "pixelmed-apps", "default-jre-headless"])
    src, consent = export(args.patients, args.slices, args.seed)
    files = [p for p in src.rglob("*") if p.is_file()]
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    work = OUT / ("throughput-work" + (f"-{args.tag}" if args.tag else ""))
    work.mkdir(parents=True, exist_ok=True)
    byte_compile()  # as installed: see common.byte_compile
    if args.compare_tree:
        byte_compile(args.compare_tree)
    prepare_gateway(work)
    skipped: dict[str, str] = {}
    cs = contenders(src, consent, work, not args.no_install, skipped, args.workers, args.zstd_variants,
                    args.compare_tree, args.image_variants)
    if args.only is not None:
        cs = [c for c in cs if c.name == "cp -r" or c.name.startswith("pydicom read/write")
              or any(s in c.name for s in args.only)]
    cs = [c for c in cs if not any(s in c.name for s in args.skip)]
    subprocess.run(["cp", "-r", str(src), str(work / "warm")], check=True)  # warm the page cache
    shutil.rmtree(work / "warm")
    loads, cores = [load_average()], [cores_free()]
    log(f"{len(files)} files, {megabytes:.0f} MB; {len(cs)} contenders x {args.repeat} rounds")
    for c in cs:
        c.peer = not (c.name.startswith(("cp -r", "pydicom", "sfr-gateway", "deidentify", "run -j")))
    run_rounds(cs, work, args.repeat, max(1, min(args.peers_repeat, args.repeat)))
    loads.append(load_average())
    cores.append(cores_free())
    report(cs, len(files), megabytes, args.repeat, skipped, args.tag, loads, cores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
