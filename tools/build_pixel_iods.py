"""Derive ``sfr_gateway/data/pixel-data-iods.json``: the SOP classes whose IOD requires Pixel Data.

Usage: ``python tools/build_pixel_iods.py STANDARD_DIR sfr_gateway/data/pixel-data-iods.json``

``STANDARD_DIR`` is the ``standard/`` data folder of the PyPI package ``dicom-standard`` 0.1.0
(innolitics, MIT; PS3.3 April 2020): ``pip download --no-deps dicom-standard==0.1.0``, unzip the
wheel, then ``dicom_standard-0.1.0.data/data/standard``. It reads ``ciods.json`` (IOD names and
ids), ``ciod_to_modules.json`` (each IOD's modules and their usage) and ``sops.json`` (SOP Class
UID -> IOD name).

An IOD whose Image Pixel module (PS3.3 C.7.6.3) is Mandatory requires Pixel Data (7FE0,0010):
Type 1C, "required if Pixel Data Provider URL (0028,7FE0) is not present" (the JPIP transfer
syntaxes). IODs where the module is Conditional (Parametric Map: Float Pixel Data instead; RT
Dose: pixels only with a dose grid) are left out: they may lawfully carry no Pixel Data.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SOURCES = ("ciods.json", "ciod_to_modules.json", "sops.json")


def build(folder: Path) -> dict[str, object]:
    ciods = json.loads((folder / "ciods.json").read_text(encoding="utf-8"))
    modules = json.loads((folder / "ciod_to_modules.json").read_text(encoding="utf-8"))
    sops = json.loads((folder / "sops.json").read_text(encoding="utf-8"))
    iod_id = {c["name"]: c["id"] for c in ciods}
    mandatory = {r["ciodId"] for r in modules if r["moduleId"] == "image-pixel" and r["usage"] == "M"}
    classes = {s["id"]: {"name": s["name"], "iod": iod_id[s["ciod"]]} for s in sops if iod_id[s["ciod"]] in mandatory}
    return {
        "_about": (
            "SOP classes whose IOD has the Image Pixel module as Mandatory (PS3.3 C.7.6.3), so an instance "
            "must carry Pixel Data (7FE0,0010) unless it has a Pixel Data Provider URL (0028,7FE0). Derived by "
            "tools/build_pixel_iods.py from PyPI dicom-standard 0.1.0 (PS3.3 April 2020, innolitics, MIT); "
            "see sfr_gateway/data/README.md."
        ),
        "_source_sha256": {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in SOURCES},
        "sop_classes": dict(sorted(classes.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = build(Path(argv[1]))
    Path(argv[2]).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
