"""Derive ``sfr_gateway/data/tcia-private-kb.json`` from TCIA's Private Tag Knowledge Base CSV.

Usage: ``python tools/build_private_kb.py SRC.csv OUT.json``

The CSV (``element_sig_pattern,tag_name,vr,private_disposition``) lists one row per
(element signature, VR). We keep one disposition per (group, private creator, element low
byte), taken from the last component of the signature (sequence paths are flattened: the
engine matches a private element wherever it lands). When rows disagree, the most
protective disposition wins: d > h > oi > o > k. ``na`` and blank count as ``d``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from pathlib import Path

_SIG = re.compile(r'\(([0-9A-Fa-f]{4}),"?([^",]*)"?,([0-9A-Fa-f]{2})\)\s*$')
_RANK = {"d": 4, "h": 3, "oi": 2, "o": 1, "k": 0}


def build(src: Path) -> dict[str, object]:
    """Return the compact knowledge base derived from the CSV at ``src``."""
    entries: dict[str, str] = {}
    names: dict[str, str] = {}
    with src.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if len(row) < 4:
                continue
            match = _SIG.search(row[0].strip())
            if not match:
                continue
            group, creator, low = match.groups()
            disp = row[3].strip().lower()
            if disp not in _RANK:
                disp = "d"
            key = f"{group.upper()}|{creator.strip()}|{low.upper()}"
            old = entries.get(key)
            if old is None or _RANK[disp] > _RANK[old]:
                entries[key] = disp
                names[key] = row[1].strip()
    return {
        "source": "TCIA Private Tag Knowledge Base 2024-02-01 (TCIAPrivateTagKB-02-01-2024-formatted.csv)",
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "key": "GROUP|private creator|element low byte (upper-case hex)",
        "dispositions": dict(sorted(entries.items())),
        "names": dict(sorted(names.items())),
    }


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    src, out = Path(argv[1]), Path(argv[2])
    data = build(src)
    out.write_text(json.dumps(data, indent=0, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{len(data['dispositions'])} elements written to {out}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
