"""Regenerate docs/status-page.png: the status page of a synthetic site with something to show.

Usage: python docs/make_status_example.py OUTDIR   (needs the Debian package chromium)

Four invented patients: three consented, one of them later withdrawn (a withdrawal request
waits), one slice marked as burned-in (refused by the engine), one study held back by an
injected engine fault, and a last run whose drop folder was missing. Nothing here is real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom

from sfr_gateway.crypto.age import Identity
from sfr_gateway.sample import generate_export


def main(out: Path) -> None:
    export = generate_export(out / "export", patients=4, seed=9, slices=4, extras=False)
    burned = sorted(export.files)[1]
    ds = pydicom.dcmread(burned)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(burned, enforce_file_format=True)
    home = out / "home"
    gw = [sys.executable, "-m", "sfr_gateway", "--home", str(home)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*gw, "init", "--site-id", "CHU042", "--central-recipient", str(Identity.generate().recipient),
                    "--export", str(export.root)], check=True, **quiet)  # type: ignore[arg-type]
    for p in export.patients[:3]:
        subprocess.run([*gw, "consent", "set", p.patient_id, "consented", "--issuer", p.issuer, "--date",
                        "2026-01-15"], check=True, **quiet)  # type: ignore[arg-type]
    fault = {**os.environ, "SFR_GATEWAY_RAISE": "deidentify:/P0002/"}
    subprocess.run([*gw, "run"], env=fault, **quiet)  # type: ignore[arg-type]
    first = export.patients[0]
    subprocess.run([*gw, "consent", "withdraw", first.patient_id, "--issuer", first.issuer], check=True, **quiet)  # type: ignore[arg-type]
    config = home / "config.toml"
    config.write_text(config.read_text().replace('destination = ""', f'destination = "{(out / "share").as_uri()}"'))
    subprocess.run([*gw, "consent", "set", export.patients[3].patient_id, "consented", "--issuer",
                    export.patients[3].issuer, "--date", "2026-01-15"], check=True, **quiet)  # type: ignore[arg-type]
    subprocess.run([*gw, "run"], env=fault, **quiet)  # type: ignore[arg-type]
    subprocess.run([*gw, "status", "--format", "html", "--output", str(out / "status.html")], **quiet)  # type: ignore[arg-type]
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={out / 'chromium'}",
                    f"--screenshot={Path(__file__).parent / 'status-page.png'}", "--window-size=1200,2000",
                    (out / "status.html").resolve().as_uri()], check=True, capture_output=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
