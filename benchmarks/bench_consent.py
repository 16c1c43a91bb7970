"""Consent benchmark: CSV import throughput and gate / coverage / list time on a large index.

Run: python benchmarks/bench_consent.py [--patients 20000] [--instances-per-study 20]
Builds a ledger with one eligible study per patient (instances rows written directly, no DICOM:
this measures the registry, not the scan), imports a CSV of three records per patient, then
times the gate, the coverage and the patient list.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine

from sfr_gateway.consent import registry as consent
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import instances, open_ledger
from sfr_gateway.ledger.instances import HeaderFacts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--instances-per-study", type=int, default=20)
    args = parser.parse_args()
    today = dt.date(2026, 6, 1)
    with tempfile.TemporaryDirectory() as tmp, open_ledger(Path(tmp) / "state.db") as ledger:
        scan_id = instances.start_scan(ledger, [b"/bench"])
        for first in range(0, args.patients, 1000):
            rows = []
            for i in range(first, min(first + 1000, args.patients)):
                for j in range(args.instances_per_study):
                    facts = HeaderFacts("1.2.840.10008.5.1.4.1.1.2", f"1.3.{i}.{j}", f"{i:08d}", "CHU", f"1.2.{i}",
                                        f"1.2.{i}.1", "CT", "CHEST", "20200401", "", "", "", "", 1, 1, "")
                    rows.append((f"/bench/{i}/{j}".encode(), 1, 1, facts, None))
            instances.record_indexed(ledger, scan_id, rows)
        csv = Path(tmp) / "consent.csv"
        with csv.open("w", encoding="cp1252") as fh:
            fh.write("IPP;émetteur;statut;date;source;référence\n")
            for i in range(args.patients):
                final = "refus" if i % 3 == 0 else "consentement"
                fh.write(f"{i:08d};CHU;information;01/01/2026;dossier;notice\n")
                fh.write(f"{i:08d};CHU;{final};01/02/2026;formulaire;F-{i}\n")
        t = time.perf_counter()
        report = consent.import_csv(ledger, csv, today=today, history=True)
        t_import = time.perf_counter() - t
        assert not report.rejected, report.rejected[:3]
        timings = {}
        for name, fn in (
            ("gate", lambda: consent.gate(ledger, ConsentPolicy("explicit", 30), today)),
            ("coverage", lambda: consent.coverage(ledger, ConsentPolicy("non-opposition", 30), today)),
            ("list", lambda: consent.list_patients(ledger)),
        ):
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            timings[name] = best
        summary = consent.coverage(ledger, ConsentPolicy("explicit", 30), today)["summary"]
    n_instances = args.patients * args.instances_per_study
    print(f"machine: {machine()}")
    print(f"index: {args.patients:,} patients, {args.patients:,} eligible studies, {n_instances:,} instances")
    print(f"import: {report.lines:,} CSV lines (cp1252) in {t_import:.2f} s "
          f"({report.lines / t_import:,.0f} lines/s), one transaction")
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.2f} s (best of 3)")
    print(f"coverage: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
