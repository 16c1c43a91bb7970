"""Dry-run audit of de-identification: what ``deidentify`` would do to each attribute, and why.

Every file goes through the engine's own ``deidentify_file`` with ``write=False``; the change
records it emits become the report. Nothing is written next to the sources, nothing is
uploaded. Values are masked unless ``reveal`` (kind, length, keyed fingerprint).

Library use::

    from sfr_gateway.audit import AuditSettings, run_audit
    from sfr_gateway.deid import PseudonymKeys, compile_plan, load_profile

    plan = compile_plan(load_profile("sfr-covid"))
    keys = PseudonymKeys(secret=secret_bytes, site_id="SFR042")
    with open("audit.json", "wb") as fh:
        summary = run_audit([export_dir], plan, keys, fh, "json")
    print(summary.totals())
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from sfr_gateway import __version__
from sfr_gateway.audit.collect import (
    ACTIONS,
    AttributeRecord,
    AuditSettings,
    InstanceAudit,
    audit_file,
    iter_audits,
)
from sfr_gateway.audit.html import HtmlSink
from sfr_gateway.audit.report import (
    CSV_COLUMNS,
    SCHEMA,
    CsvSink,
    JsonSink,
    Sink,
    TableSink,
    flatten,
)
from sfr_gateway.audit.summary import Summary
from sfr_gateway.audit.thumbs import thumbnail_of_file
from sfr_gateway.deid import tables
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.pseudonym import PseudonymKeys

FORMATS = ("table", "json", "csv", "html")
FINGERPRINT_ALGORITHM = "HMAC-SHA256(site pseudonym secret, 'audit-fingerprint' 0x00 value), first 12 hex digits"

__all__ = [
    "ACTIONS", "CSV_COLUMNS", "FORMATS", "SCHEMA", "AttributeRecord", "AuditSettings", "InstanceAudit", "Summary",
    "audit_file", "finish_report", "flatten", "iter_audits", "make_sink", "run_audit",
]


def make_sink(fmt: str, fh: BinaryIO, *, color: bool = False) -> Sink:
    """The report writer of ``fmt`` (one of ``FORMATS``) over binary file ``fh``."""
    if fmt == "json":
        return JsonSink(fh)
    if fmt == "csv":
        return CsvSink(fh)
    if fmt == "table":
        return TableSink(fh, color=color)
    if fmt == "html":
        return HtmlSink(fh)
    raise ValueError(f"unknown audit format {fmt!r}: choose one of {', '.join(FORMATS)}")


def report_meta(plan: Plan, keys: PseudonymKeys, settings: AuditSettings) -> dict[str, Any]:
    """The header of every report: schema, tool, profile, masking."""
    return {
        "schema": SCHEMA, "tool": f"sfr-gateway {__version__}",
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "profile": plan.name, "options": list(plan.options), "ps315_edition": tables.PS315_EDITION,
        "site_id": keys.site_id, "values": "revealed" if settings.reveal else "masked",
        "fingerprint": {"algorithm": FINGERPRINT_ALGORITHM, "key": keys.fingerprint()},
    }


def run_audit(sources: Iterable[Path], plan: Plan, keys: PseudonymKeys, fh: BinaryIO, fmt: str = "json", *,
              settings: AuditSettings | None = None, workers: int = 1,
              progress: Callable[[int, int], None] | None = None, color: bool = False) -> Summary:
    """Audit every file under ``sources`` and write the ``fmt`` report to ``fh``; return the totals.

    Records stream to the writer as files are audited; only per-series counts stay in memory.
    Series thumbnails (HTML) are decoded from each series' middle source file at the end.
    """
    settings = settings or AuditSettings()
    sink = make_sink(fmt, fh, color=color)
    if not sink.wants_series_thumbnails:
        settings = AuditSettings(reveal=settings.reveal, thumbnails=False, thumb_size=settings.thumb_size)
    summary = Summary()
    sink.start(report_meta(plan, keys, settings) | {"selection": "all files (no selection, no consent gate)"})
    for inst in iter_audits(sources, plan, keys, settings, workers=workers, progress=progress):
        summary.add(inst)
        sink.add(inst)
    summary.would_release = summary.released
    finish_report(sink, summary, settings)
    return summary


def finish_report(sink: Sink, summary: Summary, settings: AuditSettings) -> None:
    """Series thumbnails (HTML: decoded from each series' middle source file), then the summaries."""
    thumbnails: dict[str, bytes | None] = {}
    if sink.wants_series_thumbnails and settings.thumbnails:
        for stats in summary.series_list():
            middle = stats.middle_file()
            if middle:
                thumbnails[stats.series] = thumbnail_of_file(Path(middle), settings.thumb_size)
    sink.finish(summary, thumbnails)
