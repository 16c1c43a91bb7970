"""Conformance of ``deidentify`` on independent files: accounting, crashes and new dciodvfy errors.

    python benchmarks/conformance.py [--profile basic --profile sfr-covid] [--json OUT.json] [--markdown]

Inputs: pydicom's own ``test_files`` and ``charset_files`` and the ``pydicom-data`` package's
files (a test extra: the files are in its wheel), whatever they are (DICOM or not, admitted SOP
class or not). For each profile the library ``deidentify`` runs over all of them into a fresh
folder and the script checks that:

* every input is accounted for exactly once: a released output, a duplicate of a released
  input (same SOP Instance UID and the same instance) or a quarantine record;
* nothing crashed (the run finishes; no quarantine reason says ``internal``);
* dciodvfy (Debian dicom3tools) finds no NEW error in any output: an error line of the output
  that the input's own report does not have (values in the lines are masked, since dates and
  UIDs change by design).

Exit status 0 when all hold, 1 otherwise. ``tests/test_deid_conformance.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfr_gateway.deid.folder import RunSpec, iter_inputs, run
from tests.independent_data import folders

# values in dciodvfy's lines (after "=", "values are", "value"): dates and UIDs change by design;
# attribute and module names (Element=<...> Module=<...>) and Types are kept
_VALUE = re.compile(r"(?:(?<=\s)=\s*<[^>]*>|(?:values? (?:are|is|of)?\s*).*$|\s*\[\d+\]\s*=.*$)")
SECRET = bytes(range(32))


@dataclass
class ProfileReport:
    """What one profile did to the corpus."""

    profile: str
    inputs: int = 0
    released: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    accounted_once: bool = False
    crashed: str = ""
    checked: int = 0
    new_errors: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """All three conditions hold."""
        return self.accounted_once and not self.crashed and not self.new_errors

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return {"profile": self.profile, "inputs": self.inputs, "released": self.released,
                "duplicates": self.duplicates, "quarantined": sum(self.quarantined.values()),
                "quarantined_by_reason": dict(sorted(self.quarantined.items())),
                "accounted_once": self.accounted_once, "crashed": self.crashed,
                "outputs_checked_with_dciodvfy": self.checked,
                "outputs_with_new_errors": len(self.new_errors), "new_errors": self.new_errors,
                "seconds": round(self.seconds, 1), "ok": self.ok}


def _errors(path: Path, dciodvfy: str) -> set[str]:
    """dciodvfy's error lines for ``path``, values masked."""
    done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, errors="replace", timeout=120,
                          check=False)
    return {_VALUE.sub("#", line.strip()) for line in (done.stdout + done.stderr).splitlines()
            if line.startswith("Error")}


def inputs() -> list[Path]:
    """Every file of the independent corpus, in the order ``deidentify`` walks them."""
    return list(iter_inputs(folders()))


def check(profile: str, workdir: Path, dciodvfy: str | None, workers: int = 1) -> ProfileReport:
    """Run ``deidentify`` with ``profile`` over the corpus and check it (see the module docstring)."""
    report = ProfileReport(profile)
    sources = inputs()
    report.inputs = len(sources)
    outcomes: dict[Path, list[tuple[str, dict[str, str]]]] = {}
    spec = RunSpec(profile=profile, options=(), site_overrides=(), site_private_keep=(),
                   output=workdir / f"out-{profile}", quarantine=workdir / f"quarantine-{profile}",
                   keep_copies=False, secret=SECRET, site_id="CONF01")
    started = time.perf_counter()
    try:
        summary = run(folders(), spec, workers=workers,
                      on_file=lambda p, status, info: outcomes.setdefault(p, []).append((status, info)))
    except Exception as exc:  # noqa: BLE001 - a crash is what this script counts
        report.crashed = f"{type(exc).__name__}: {exc}"
        return report
    report.seconds = time.perf_counter() - started
    report.released, report.duplicates, report.quarantined = summary.released, summary.duplicates, summary.quarantined
    report.accounted_once = (set(outcomes) == set(sources) and all(len(v) == 1 for v in outcomes.values())
                             and summary.seen == len(sources)
                             and summary.released + summary.duplicates + sum(summary.quarantined.values()) == len(sources)
                             and len(list(spec.output.rglob("*.dcm"))) == summary.written == summary.released)
    if any("internal" in reason for reason in summary.quarantined):
        report.crashed = "internal error in a quarantine reason"
    if dciodvfy is None:
        return report
    released = [(src, spec.output / fate[0][1]["output"]) for src, fate in outcomes.items() if fate[0][0] == "released"]
    report.checked = len(released)

    def compare(pair: tuple[Path, Path]) -> tuple[Path, set[str]]:
        src, out = pair
        return src, _errors(out, dciodvfy) - _errors(src, dciodvfy)

    with ThreadPoolExecutor(2) as pool:
        for src, new in pool.map(compare, released):
            if new:
                report.new_errors[src.name] = sorted(new)
    return report


def markdown(reports: list[ProfileReport]) -> str:
    """The README table."""
    lines = ["| profile | inputs | released | duplicates | quarantined | accounted once | crashes | "
             "outputs checked | new dciodvfy errors |", "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in reports:
        lines.append(f"| `{r.profile}` | {r.inputs} | {r.released} | {r.duplicates} | {sum(r.quarantined.values())} | "
                     f"{'yes' if r.accounted_once else 'NO'} | {1 if r.crashed else 0} | {r.checked} | "
                     f"{sum(map(len, r.new_errors.values()))} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", dest="profiles")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args()
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        print("dciodvfy not found (apt-get install dicom3tools): checking accounting and crashes only", file=sys.stderr)
    reports = []
    with tempfile.TemporaryDirectory(prefix="sfr-conformance-") as tmp:
        for profile in args.profiles or ["basic", "sfr-covid"]:
            report = check(profile, Path(tmp), dciodvfy, args.workers)
            reports.append(report)
            print(json.dumps(report.as_dict(), indent=2))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in reports], indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        print(markdown(reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
