"""Regenerate docs/audit-report.png and the table excerpt of docs/audit.md (synthetic data only).

Usage: python docs/make_audit_example.py OUTDIR   (needs the Debian package chromium)

The dose-report screens of the synthetic export are blank; here they get text-like strokes so the
report's thumbnails show what a burned-in annotation looks like. Nothing here is real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom

from sfr_gateway.sample import generate_export


def _paint_text_like(path: Path, seed: int) -> None:
    ds = pydicom.dcmread(path)
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), dtype=np.uint8)
    for line in range(10):
        x = 12
        y = 14 + line * 22
        while x < 230:
            w = int(rng.integers(6, 30))
            for cx in range(x, min(x + w, 244), 6):  # "letters": small blocks with gaps
                img[y:y + 9, cx:cx + 4] = 230
            x += w + 10
    ds.Rows = ds.Columns = 256
    ds.PixelData = img.tobytes()
    ds.save_as(path)


def main(out: Path) -> None:
    export = generate_export(out / "export", patients=2, seed=4, rows=128, cols=128, slices=5)
    for i, f in enumerate(p for p in export.files if p.name.startswith("dose_")):
        _paint_text_like(f, i)
    gw = [sys.executable, "-m", "sfr_gateway", "--home", str(out / "home")]
    subprocess.run([*gw, "init", "--site-id", "CHU042"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*gw, "audit", str(export.root), "--format", "html", "-o", str(out / "audit.html")], check=True)
    with open(out / "audit.txt", "wb") as fh:
        subprocess.run([*gw, "audit", str(export.root)], check=True, stdout=fh)
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={out / 'chromium'}",
                    f"--screenshot={Path(__file__).parent / 'audit-report.png'}", "--window-size=1280,2400",
                    (out / "audit.html").resolve().as_uri()], check=True, capture_output=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
