"""The cron entry point, one way through: lock → scan → select → consent gate → de-identify →
package → encrypt → sign → upload (plus queued withdrawal requests).

Every stage reads what the previous one recorded in the ledger, so a run killed anywhere is
completed by the next one.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..consent import registry as consent
from ..dicomnet.retention import prune_incoming  # received files released long enough ago
from ..errors import ConfigError
from ..home.config import Config
from ..home.faults import checkpoint
from ..home.lock import exclusive
from ..ledger import Ledger, open_ledger
from ..ledger import batches as sql
from ..scan.walk import scan
from .held import unusable
from .upload import upload


@dataclass
class RunReport:
    """Everything one run did, for the one-line summary and ``--json``."""

    dry_run: bool
    scan: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, Any] = field(default_factory=dict)
    release: dict[str, Any] = field(default_factory=dict)
    upload: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    unusable: dict[str, int] = field(default_factory=dict)  # files the gateway cannot use, by kind

    def as_dict(self) -> dict[str, Any]:
        out = {"dry_run": self.dry_run, "scan": self.scan, "consent": self.consent,
               "release": self.release, "upload": self.upload, "unusable_files": self.unusable,
               "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
        if self.dry_run:  # the number `audit --format json` carries too (the same plan)
            out["would_release"] = int(self.release.get("would_release", {}).get("instances", 0))
        return out

    @property
    def needs_attention(self) -> bool:
        """True when a human should look: unreadable files, refused or held-back files and studies,
        failed uploads."""
        return bool(self.scan.get("this_scan", {}).get("unreadable") or self.release.get("quarantined")
                    or self.held_back or self.upload.get("failed"))

    @property
    def held_back(self) -> int:
        """Studies and files this run held back (the partial exit code when non-zero)."""
        held = self.release.get("held_back", {})
        return int(held.get("studies", 0)) + int(held.get("files", 0))

    def summary_line(self) -> str:
        s, r, u = self.scan.get("this_scan", {}), self.release, self.upload
        if self.dry_run:
            would = r.get("would_release", {})
            return (f"dry run: would release {would.get('instances', 0)} instances of {would.get('studies', 0)} "
                    f"studies ({would.get('bytes', 0) / 1e6:.1f} MB); {u.get('pending', 0)} batches pending upload"
                    f"{self.unusable_text()}")
        held = self.consent.get("without_patient_id", {})
        nopid = (f"; {held['eligible_instances']} eligible instances without Patient ID held"
                 if held.get("eligible_instances") and held.get("policy") != "release" else "")
        unresolved = self.consent.get("unresolved_records", {})
        stuck = unresolved.get("ambiguous", 0) + unresolved.get("issuer-mismatch", 0)
        if stuck:  # consent recorded for a scanned patient but applied to none: say it every run
            nopid += f"; {stuck} consent records applied to no scanned patient (see `consent list`)"
        return (f"scanned {s.get('seen', 0)} files ({s.get('read', 0)} read, {s.get('unreadable', 0)} unreadable); "
                f"released {r.get('instances', 0)} instances in {r.get('batches', 0)} batches "
                f"({r.get('quarantined', 0)} quarantined{self._held_text()}); "
                f"uploaded {u.get('acknowledged', 0)} batches "
                f"to {u.get('destination', '?')}, {u.get('pending', 0)} pending{nopid}{self.unusable_text()}")

    def unusable_text(self) -> str:
        """'; 3 files cannot be used (2 unreadable, 1 refused): `sfr-gateway quarantine list`' while any
        exist, at every run (not only the run that found them)."""
        total = self.unusable.get("total", 0)
        if not total:
            return ""
        kinds = ", ".join(f"{self.unusable[k]} {words}" for k, words in
                          (("unreadable", "unreadable"), ("refused", "refused by the engine"),
                           ("held_back", "held back")) if self.unusable.get(k))
        return f"; {total} {'file' if total == 1 else 'files'} cannot be used ({kinds}): `sfr-gateway quarantine list`"

    def held_back_text(self) -> str:
        """'1 study and 2 files' held back by this run ('' when none)."""
        held = self.release.get("held_back", {})
        n, f = held.get("studies", 0), held.get("files", 0)
        parts = ([f"{n} {'study' if n == 1 else 'studies'}"] if n else []) + \
            ([f"{f} {'file' if f == 1 else 'files'}"] if f else [])
        return " and ".join(parts)

    def _held_text(self) -> str:
        text = self.held_back_text()
        return f", held back {text}" if text else ""


def run(
    config: Config,
    sources: Sequence[Path] = (),
    *,
    today: dt.date | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    progress: Callable[..., None] | None = None,
) -> RunReport:
    """One whole pipeline run under the HOME lock (LockHeldError if another run holds it).

    ``progress(stage, done, total=None)``: ``scan`` and ``release`` count files, ``upload``
    bytes; the total comes with a first call when it is known."""
    from .release import release

    roots = list(sources) or list(config.default_sources())
    if not roots:
        raise ConfigError("nothing to scan: give export folders, set [site] exports in config.toml, "
                          "or receive over DICOM (sfr-gateway listen)")
    today = today or dt.date.today()
    workers = workers or min(2, os.cpu_count() or 1)
    report = RunReport(dry_run=dry_run)
    clock = time.perf_counter()

    def lap(name: str) -> None:  # how long each stage took (the report's "seconds")
        nonlocal clock
        now = time.perf_counter()
        report.seconds[name] = now - clock
        clock = now

    started = clock
    with exclusive(config.home.lock), open_ledger(config.home.state_db) as ledger:
        ledger.record_event("run", "start", "ok", {"dry_run": dry_run, "roots": [str(r) for r in roots]})
        step = (lambda name: (lambda n: progress(name, n))) if progress else (lambda name: None)
        total = (lambda name: (lambda n: progress(name, 0, n))) if progress else (lambda name: None)
        report.scan = scan(ledger, roots, config.selection, progress=step("scan"), on_total=total("scan")).as_dict()
        lap("scan")
        checkpoint("after-scan")
        report.consent = consent.coverage(ledger, config.consent, today)
        report.release = release(ledger, config, today=today, workers=workers, dry_run=dry_run,
                                 progress=step("release"), on_total=total("release")).as_dict()
        lap("release")

        report.unusable = unusable(ledger)
        if not dry_run:  # the local mapping: every packaged study, and its pseudonym as released
            from ..mapping.sync import sync_for_run

            sync_for_run(ledger, config)
            lap("mapping")
        if dry_run:
            report.upload = {"pending": _pending(ledger)}
        else:
            report.upload = upload(ledger, config, today=today, progress=_bytes_sent(ledger, progress)).as_dict()
            report.upload["incoming_removed"] = prune_incoming(ledger, config)
        lap("upload")
        report.seconds["total"] = time.perf_counter() - started
        ledger.record_event("run", "finish", "partial" if report.held_back else "ok", {
            "released": report.release.get("instances", 0), "batches": report.release.get("batches", 0),
            "acknowledged": report.upload.get("acknowledged", 0), "dry_run": dry_run,
            "held_back": report.held_back,
        })
    return report


def _bytes_sent(ledger: Ledger, progress: Callable[..., None] | None) -> Callable[[int, int], None] | None:
    """The transport reports (bytes done, bytes total) per batch; the bar wants the whole upload."""
    if progress is None:
        return None
    total = sum(b.size or 0 for b in sql.batches(ledger, ["packaged", "failed"]))
    if not total:
        return None
    progress("upload", 0, total)
    seen = {"before": 0, "done": 0, "size": 0}

    def moved(done: int, size: int) -> None:
        if done < seen["done"] or size != seen["size"]:  # the next batch
            seen["before"] += seen["size"] if seen["done"] else 0
            seen["size"] = size
        seen["done"] = done
        progress("upload", min(total, seen["before"] + done))

    return moved


def _pending(ledger: Ledger) -> int:
    return len(sql.batches(ledger, ["packaged", "failed"]))


def upload_only(config: Config) -> dict[str, Any]:
    """``sfr-gateway upload``: send pending batches and withdrawal requests, under the lock."""
    with exclusive(config.home.lock), open_ledger(config.home.state_db) as ledger:
        return upload(ledger, config).as_dict()
