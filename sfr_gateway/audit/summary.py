"""Per study, per series and per attribute totals of an audit, built while records stream by.

Memory stays bounded by the number of series and of distinct (attribute, action, rule)
decisions, not by the number of files: instances are folded in and dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sfr_gateway.audit import risk
from sfr_gateway.audit.collect import ACTIONS, InstanceAudit

_ITEM = re.compile(r"\[\d+\]")
_MAX_DISTINCT = 1000


@dataclass
class SeriesStats:
    """Counts of one series (keyed UIDs only)."""

    patient: str
    study: str
    series: str
    modality: str = ""
    series_number: str = ""
    instances: int = 0
    released: int = 0
    quarantined: int = 0
    not_released: int = 0
    why: Counter[str] = field(default_factory=Counter)  # "stage: reason" -> files (audit as run)
    actions: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    members: list[tuple[float, str]] = field(default_factory=list, repr=False)

    def middle_file(self) -> str | None:
        """The source file of the series' middle image (by Instance Number, then path)."""
        if not self.members:
            return None
        ordered = sorted(self.members)
        return ordered[len(ordered) // 2][1]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"patient": self.patient, "study": self.study, "series": self.series, "modality": self.modality,
                "series_number": self.series_number, "instances": self.instances, "released": self.released,
                "quarantined": self.quarantined, "not_released": self.not_released,
                "why_not_released": dict(sorted(self.why.items())),
                "actions": {a: self.actions.get(a, 0) for a in ACTIONS},
                "flags": dict(sorted(self.flags.items())),
                "quarantine_reasons": dict(sorted(self.quarantine_reasons.items()))}


@dataclass
class DecisionStats:
    """One (attribute path, creator, action, rule) decision over all instances."""

    instances: int = 0
    fingerprints: set[str] = field(default_factory=set)
    saturated: bool = False


def verdict(study: dict[str, Any]) -> str:
    """One study in words: what a run would release of it, and why not the rest."""
    why = study["why"]
    parts = []
    if study["released"]:
        parts.append(f"would release {study['released']}")
    if study["quarantined"]:
        parts.append(f"{study['quarantined']} refused by the engine")
    if why:
        shown = [f"{n} {key.partition(': ')[2]} ({key.partition(': ')[0]})"
                 for key, n in sorted(why.items(), key=lambda kv: (-kv[1], kv[0]))]
        parts.append("not released: " + ", ".join(shown))
    return "; ".join(parts) or "nothing"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


@dataclass
class Summary:
    """Everything the report shows besides the per-instance records."""

    series: dict[tuple[str, str, str], SeriesStats] = field(default_factory=dict)
    decisions: dict[tuple[str, str, str | None, str, str, str], DecisionStats] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    flag_groups: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    files: int = 0
    released: int = 0
    duplicates: int = 0
    attributes: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    without_patient_id: int = 0
    not_released: Counter[str] = field(default_factory=Counter)  # "stage: reason" -> files
    would_release: int | None = None  # the run's plan (audit as run), else what the engine releases

    def add(self, inst: InstanceAudit) -> None:
        """Fold one instance in."""
        self.files += 1
        self.without_patient_id += any(f.kind == "no-patient-id" for f in inst.flags)
        key = (inst.patient, inst.study, inst.series)
        stats = self.series.get(key)
        if stats is None:
            stats = self.series[key] = SeriesStats(*key)
        stats.instances += 1
        stats.modality = stats.modality or inst.modality
        stats.series_number = stats.series_number or inst.series_number
        stats.members.append((_number(inst.instance_number), inst.file))
        for flag in inst.flags:
            stats.flags[flag.kind] += 1
            self.flag_groups[(inst.series, flag.kind, _ITEM.sub("[*]", flag.path), flag.detail, inst.patient)] += 1
        if inst.status == "not-released":  # a run would not take it: the stage and reason say why
            why = inst.why or {}
            why_key = f"{why.get('stage', '?')}: {why.get('reason', '?')}"
            stats.not_released += 1
            stats.why[why_key] += 1
            self.not_released[why_key] += 1
            return
        if inst.status == "duplicate":  # released once, as its first copy
            self.duplicates += 1
            return
        if inst.status == "quarantined":
            assert inst.quarantine is not None  # noqa: S101 - a type narrowing: quarantined records carry one
            stats.quarantined += 1
            stats.quarantine_reasons[inst.quarantine["reason"]] += 1
            self.quarantined.append({"file": inst.file, **inst.quarantine, "patient": inst.patient,
                                     "study": inst.study, "series": inst.series,
                                     "flags": [f.kind for f in inst.flags]})
            return
        stats.released += 1
        self.released += 1
        for rec in inst.attributes:
            self.attributes += 1
            stats.actions[rec.action] += 1
            self.actions[rec.action] += 1
            dkey = (_ITEM.sub("[*]", rec.path), rec.keyword, rec.private_creator, rec.action, rec.code, rec.rule)
            dec = self.decisions.get(dkey)
            if dec is None:
                dec = self.decisions[dkey] = DecisionStats()
            dec.instances += 1
            fp = (rec.before or {}).get("fingerprint")
            if fp and not dec.saturated:
                dec.fingerprints.add(fp)
                dec.saturated = len(dec.fingerprints) >= _MAX_DISTINCT

    def studies(self) -> list[dict[str, Any]]:
        """Per study totals."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for s in self.series.values():
            st = out.setdefault((s.patient, s.study), {
                "patient": s.patient, "study": s.study, "series": 0, "instances": 0, "released": 0,
                "quarantined": 0, "not_released": 0, "why": Counter(), "actions": Counter(), "flags": Counter()})
            st["series"] += 1
            for k in ("instances", "released", "quarantined", "not_released"):
                st[k] += getattr(s, k)
            st["why"].update(s.why)
            st["actions"].update(s.actions)
            st["flags"].update(s.flags)
        rows = []
        for _, v in sorted(out.items()):
            rows.append({**{k: x for k, x in v.items() if k != "why"}, "verdict": verdict(v),
                         "why_not_released": dict(sorted(v["why"].items())),
                         "actions": {a: v["actions"].get(a, 0) for a in ACTIONS},
                         "flags": dict(sorted(v["flags"].items()))})
        return rows

    def series_list(self) -> list[SeriesStats]:
        """Series in a stable order (patient, study, series number)."""
        return sorted(self.series.values(), key=lambda s: (s.patient, s.study, _number(s.series_number), s.series))

    def decision_list(self) -> list[dict[str, Any]]:
        """Per attribute decisions over all released instances."""
        rows = []
        for (path, keyword, creator, action, code, rule), dec in sorted(self.decisions.items(), key=lambda kv: kv[0][0]):
            rows.append({"path": path, "keyword": keyword, "private_creator": creator, "action": action, "code": code,
                         "rule": rule, "instances": dec.instances,
                         "distinct_values": len(dec.fingerprints) if not dec.saturated else f">={_MAX_DISTINCT}"})
        return rows

    def flag_list(self) -> list[dict[str, Any]]:
        """Flags grouped by series, kind, attribute and detail, with instance counts."""
        return [{"patient": p, "series": s, "kind": k, "path": path, "detail": d, "instances": n,
                 "image": risk.image_flag(k)}
                for (s, k, path, d, p), n in sorted(self.flag_groups.items())]

    def totals(self) -> dict[str, Any]:
        """Whole-run totals."""
        reasons = Counter(q["reason"] for q in self.quarantined)
        return {"files": self.files, "released": self.released, "duplicates": self.duplicates,
                "would_release": self.released if self.would_release is None else self.would_release,
                "not_released": sum(self.not_released.values()),
                "not_released_by_reason": dict(sorted(self.not_released.items())),
                "quarantined": len(self.quarantined),
                "quarantined_by_reason": dict(sorted(reasons.items())),
                "patients": len({k[0] for k in self.series if k[0]}),
                "studies": len({k[:2] for k in self.series if k[1]}), "series": len(self.series),
                "attributes": self.attributes, "actions": {a: self.actions.get(a, 0) for a in ACTIONS},
                "flags": sum(self.flag_groups.values()), "without_patient_id": self.without_patient_id}
