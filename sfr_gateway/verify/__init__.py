"""Residual-PHI verification: an oracle independent of the de-identification engine.

It imports nothing from ``sfr_gateway.deid`` and reads no profile: it collects the PHI tokens of
the *sources* itself (``tokens``, ``sources``), searches every value of every *output* file for
them (``walk``, ``scan``), checks UID remapping, references and the identity flag (``uids``), and
reports findings without patient values (``report``).

From Python::

    from sfr_gateway.verify import verify_outputs
    report = verify_outputs(Path("out"), [Path("/exports/pacs")])
    if not report.clean:
        for finding in report.errors:
            print(finding.file, finding.path, finding.kind)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from .pool import Progress, default_workers, read_sources, scan_outputs
from .report import Finding, VerifyReport
from .sources import iter_files
from .uids import FileFacts, check_uids, pair_files

__all__ = ["Finding", "VerifyReport", "verify_outputs"]

log = logging.getLogger(__name__)


def verify_outputs(
    output: Path,
    sources: Sequence[Path],
    *,
    include_pixel_data: bool = False,
    ignore_kinds: Sequence[str] = (),
    workers: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every file under ``output`` against the PHI of the files under ``sources``.

    ``progress(phase, done, total)`` is called as files are read (phase ``sources``/``outputs``).
    ``ignore_kinds`` drops token kinds the site decided to keep (e.g. ``institution-name`` under
    Retain Institution Identity). ``workers``: processes reading files (default: one per CPU,
    at most 8; 1 runs everything in this process). Raises :class:`InputError` when a path is
    missing or when no source file is DICOM (an empty token set would prove nothing).
    """
    started = time.perf_counter()
    workers = default_workers() if workers is None else workers
    output = Path(output)
    if not output.is_dir():
        raise InputError(f"output folder not found: {output}")
    roots = [Path(s) for s in sources]
    for root in roots:
        if not root.exists():
            raise InputError(f"source path not found: {root}")
    report = VerifyReport(output=str(output), sources=[str(r) for r in roots],
                          pixel_data_searched=include_pixel_data)

    source_files = list(iter_files(roots, exclude=output))
    index, src_facts, report.unreadable_sources = read_sources(source_files, workers, progress)
    report.source_files = len(src_facts)
    if not src_facts:
        raise InputError("no readable DICOM file among the sources: nothing to verify against")
    ignored = set(ignore_kinds)
    report.tokens = {k: v for k, v in index.counts().items() if k not in ignored}

    out_files = list(iter_files([output]))
    scans = scan_outputs(output, out_files, index, include_pixel_data=include_pixel_data, workers=workers,
                         progress=progress)
    report.output_files = len(out_files)
    out_facts = [s.facts for s in scans if s.facts is not None]
    report.dicom_outputs = len(out_facts)
    report.manifests = sum(s.manifest for s in scans)

    pairs = pair_files(src_facts, out_facts)
    report.paired = len(pairs)
    study_of = _source_study_of(out_facts, pairs)
    findings: list[Finding] = []
    for scan in scans:
        findings += scan.other
        study = study_of.get(scan.facts.rel) if scan.facts is not None else None
        for pending in scan.hits:
            if pending.entry.kinds <= ignored:
                continue
            if pending.entry.applies_to(study):
                findings.append(pending.finding)
    findings += check_uids(src_facts, out_facts, pairs)
    report.findings = sorted(findings, key=lambda f: (f.file, f.path, f.check, f.kind))
    report.seconds = time.perf_counter() - started
    log.info("verify: %d outputs, %d findings, %.1f s", report.output_files, len(report.findings), report.seconds)
    return report


def _source_study_of(outputs: list[FileFacts], pairs: dict[str, FileFacts]) -> dict[str, str]:
    """Output rel -> original StudyInstanceUID, from its own pair or a paired file of its study."""
    by_new_study: dict[str, set[str]] = {}
    for out in outputs:
        src = pairs.get(out.rel)
        if src is not None and out.study_uid and src.study_uid:
            by_new_study.setdefault(out.study_uid, set()).add(src.study_uid)
    found: dict[str, str] = {}
    for out in outputs:
        src = pairs.get(out.rel)
        if src is not None and src.study_uid:
            found[out.rel] = src.study_uid
        else:
            olds = by_new_study.get(out.study_uid, set())
            if len(olds) == 1:
                found[out.rel] = next(iter(olds))
    return found
