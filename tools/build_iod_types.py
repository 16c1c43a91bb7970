"""Derive ``sfr_gateway/data/iod-types.json`` from the PS3.3 attribute-Type reference.

Usage: ``python tools/build_iod_types.py ps3.3-iod-attribute-types.json sfr_gateway/data/iod-types.json``

The source (see ``sfr_gateway/data/README.md``) lists, per image SOP Class, every path of a
Table E.1-1 attribute with each of its occurrences (module or functional-group macro, Type,
module usage). The engine needs one Type per path: where an attribute occurs in several modules
of one IOD, the strongest Type wins (1 > 1C > 2 > 2C > 3), because a module that is present
requires its Type 1 and 2 attributes and a dummy or empty value never carries more than the
removal would. Paths keep their tags in the source's spelling, upper-cased; ``fg:`` marks a
functional-group macro path (inside the Shared or a Per-frame Functional Groups item).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

_STRENGTH = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def build(src: Path) -> dict[str, object]:
    """The compact table derived from the reference file at ``src``."""
    data = json.loads(src.read_text(encoding="utf-8"))
    classes: dict[str, object] = {}
    for uid, entry in sorted(data["sop_classes"].items()):
        types: dict[str, str] = {}
        for path, occurrences in entry["attributes"].items():
            known = [o["type"] for o in occurrences if o["type"] in _STRENGTH]
            if known:
                types[path.upper().replace("FG:", "fg:")] = min(known, key=_STRENGTH.__getitem__)
        classes[uid] = {"iod": entry["iod"], "types": dict(sorted(types.items()))}
    return {
        "_about": (
            "Attribute Type (1, 1C, 2, 2C, 3) of every Table E.1-1 attribute path in the image IODs the shipped "
            "profiles admit, one Type per path (the strongest where an attribute occurs in several modules). "
            "Derived by tools/build_iod_types.py from ps3.3-iod-attribute-types.json (PS3.3 2020 edition via "
            "PyPI dicom-standard 0.1.0 / innolitics dicom-standard, MIT); see sfr_gateway/data/README.md."
        ),
        "_source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "sop_classes": classes,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = build(Path(argv[1]))
    Path(argv[2]).write_text(json.dumps(out, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
