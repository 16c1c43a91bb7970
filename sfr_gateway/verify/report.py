"""Findings of a verify run, and their JSON form (schema ``sfr-gateway/verify/1``).

A finding never carries a patient value: it names the output file, the attribute path, the
keyword and the *kind* of token. The token itself (or the UID of a dangling reference) is kept in
``token`` and only rendered when the caller asks to reveal it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA = "sfr-gateway/verify/1"
_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem found in one output file."""

    severity: str
    """``error`` (fails the run), ``warning``, or ``info`` (expected, said for completeness)."""
    check: str
    """``phi-token``, ``uid-mapping``, ``media-storage-uid``, ``study-folder``, ``identity-removed``,
    ``dangling-reference``, ``unreadable-output``."""
    file: str
    """Output file, relative to OUT."""
    path: str
    """Attribute path, e.g. ``(0008,1140)[0].(0008,1155)``; ``<raw>`` for a non-DICOM file."""
    keyword: str
    kind: str
    """For ``phi-token``: the token kind (``patient-name-part``, ``birth-date``...); else what is wrong."""
    kinds: tuple[str, ...] = ()
    vr: str = ""
    where: str = ""
    """For ``phi-token``: ``text``, ``binary`` or ``file-meta``."""
    count: int = 1
    detail: str = ""
    """Non-PHI context (a folder name)."""
    token: str | None = field(default=None, compare=False)
    """The normalised token or value: shown only with ``reveal``."""

    def to_dict(self, reveal: bool = False) -> dict[str, Any]:
        """JSON-ready record; ``token`` only when ``reveal``."""
        data: dict[str, Any] = {
            "severity": self.severity,
            "check": self.check,
            "file": self.file,
            "path": self.path,
            "keyword": self.keyword,
            "kind": self.kind,
        }
        if self.kinds:
            data["kinds"] = list(self.kinds)
        if self.vr:
            data["vr"] = self.vr
        if self.where:
            data["where"] = self.where
        if self.count != 1:
            data["count"] = self.count
        if self.detail:
            data["detail"] = self.detail
        if reveal and self.token is not None:
            data["token"] = self.token
        return data


@dataclass
class VerifyReport:
    """Everything a verify run found, with the counts a reader needs to trust a clean result."""

    output: str
    sources: list[str]
    findings: list[Finding] = field(default_factory=list)
    output_files: int = 0
    dicom_outputs: int = 0
    source_files: int = 0
    unreadable_sources: int = 0
    paired: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    pixel_data_searched: bool = False
    seconds: float = 0.0
    manifests: int = 0  # batch manifests among the outputs: searched, not DICOM, not a finding

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    def summary(self) -> list[dict[str, Any]]:
        """Findings grouped by severity, check and kind, worst first (errors, then warnings, then
        information; the most frequent first): how many, in how many files."""
        groups: dict[tuple[str, str, str], tuple[int, set[str]]] = {}
        for f in self.findings:
            n, files = groups.get((f.severity, f.check, f.kind), (0, set()))
            files.add(f.file)
            groups[(f.severity, f.check, f.kind)] = (n + 1, files)
        rows = [{"severity": sev, "check": check, "kind": kind, "findings": n, "files": len(files)}
                for (sev, check, kind), (n, files) in groups.items()]
        return sorted(rows, key=lambda r: (_RANK.get(r["severity"], 9), -r["findings"], r["check"], r["kind"]))

    @property
    def clean(self) -> bool:
        """True when no finding is an error (warnings do not fail a run)."""
        return not self.errors

    def counts_by_check(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            key = f"{f.severity}:{f.check}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self, reveal: bool = False) -> dict[str, Any]:
        """The ``--json`` document (see the README section "verify --json")."""
        rate = self.output_files / self.seconds if self.seconds > 0 else None
        return {
            "schema": SCHEMA,
            "clean": self.clean,
            "output": self.output,
            "sources": self.sources,
            "revealed": reveal,
            "pixel_data_searched": self.pixel_data_searched,
            "counts": {
                "output_files": self.output_files,
                "dicom_outputs": self.dicom_outputs,
                "source_files": self.source_files,
                "unreadable_sources": self.unreadable_sources,
                "paired_outputs": self.paired,
                "batch_manifests": self.manifests,
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "info": len(self.infos),
                "by_check": self.counts_by_check(),
                "tokens_by_kind": self.tokens,
            },
            "summary": self.summary(),
            "findings": [f.to_dict(reveal) for f in self.findings],
            "seconds": round(self.seconds, 3),
            "files_per_second": round(rate, 1) if rate else None,
        }
