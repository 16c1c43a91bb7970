"""Report writers: JSON (one document, streamed), CSV (one row per record), a text table, HTML.

Every writer receives the same :class:`InstanceAudit` stream and the same :class:`Summary`;
JSON and CSV carry the same records (``flatten`` is the CSV view of one JSON instance).
The schema is documented in ``docs/audit.md`` (``SCHEMA``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from sfr_gateway.audit.collect import ACTIONS, InstanceAudit
from sfr_gateway.audit.summary import Summary

SCHEMA = "sfr-gateway.audit/1"
CSV_COLUMNS = (
    "record", "file", "status", "patient", "study", "series", "instance", "sop_class", "path", "tag", "keyword",
    "vr", "private_creator", "action", "code", "rule", "before_kind", "before_length", "before_vm",
    "before_fingerprint", "before_value", "after_kind", "after_length", "after_vm", "after_fingerprint",
    "after_value", "flag_kind", "detail",
)


class Sink(Protocol):
    """What the audit runner feeds: ``start`` once, ``add`` per instance, ``finish`` once."""

    wants_series_thumbnails: bool

    def start(self, meta: dict[str, Any]) -> None: ...

    def add(self, inst: InstanceAudit) -> None: ...

    def finish(self, summary: Summary, thumbnails: dict[str, bytes | None]) -> None: ...


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return str(value)


def flatten(inst: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The CSV rows of one instance in its JSON form: a quarantine row, flag rows, attribute rows."""
    base = {k: _cell(inst.get(k)) for k in ("file", "status", "patient", "study", "series", "instance", "sop_class")}
    blank = dict.fromkeys(CSV_COLUMNS, "")
    if inst.get("why"):  # not released by a run: the stage (action), the reason (rule), the detail
        w = inst["why"]
        yield {**blank, **base, "record": "not-released", "action": w["stage"], "rule": w["reason"], "detail": w["detail"]}
    if inst.get("quarantine"):
        q = inst["quarantine"]
        yield {**blank, **base, "record": "quarantine", "action": "quarantined", "rule": q["reason"], "detail": q["detail"]}
    for f in inst.get("flags", []):
        yield {**blank, **base, "record": "flag", "path": f["path"], "flag_kind": f["kind"], "detail": f["detail"]}
    for a in inst.get("attributes", []):
        row = {**blank, **base, "record": "attribute"}
        for k in ("path", "tag", "keyword", "vr", "private_creator", "action", "code", "rule"):
            row[k] = _cell(a[k])
        for side in ("before", "after"):
            v = a[side] or {}
            for k in ("kind", "length", "vm", "fingerprint", "value"):
                row[f"{side}_{k}"] = _cell(v.get(k))
        yield row


class _Text:
    """A text view over a binary file handle (UTF-8), without owning it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def write(self, text: str) -> int:
        self.fh.write(text.encode("utf-8"))
        return len(text)


class JsonSink:
    """One JSON document; ``instances`` is streamed, the summaries follow it."""

    wants_series_thumbnails = False

    def __init__(self, fh: BinaryIO) -> None:
        self.out = _Text(fh)
        self.first = True

    def start(self, meta: dict[str, Any]) -> None:
        head = _dump(meta)[:-1]
        self.out.write(head + (", " if meta else "") + '"instances": [\n')

    def add(self, inst: InstanceAudit) -> None:
        self.out.write(("" if self.first else ",\n") + _dump(inst.as_dict()))
        self.first = False

    def finish(self, summary: Summary, thumbnails: dict[str, bytes | None]) -> None:
        tail = {"series": [s.as_dict() for s in summary.series_list()], "studies": summary.studies(),
                "quarantined": summary.quarantined, "flags": summary.flag_list(),
                "attributes": summary.decision_list(), "totals": summary.totals()}
        self.out.write("\n], " + _dump(tail)[1:] + "\n")


class CsvSink:
    """One row per record (attribute, quarantine, flag), columns ``CSV_COLUMNS``."""

    wants_series_thumbnails = False

    def __init__(self, fh: BinaryIO) -> None:
        self.writer = csv.DictWriter(_Text(fh), fieldnames=CSV_COLUMNS, lineterminator="\n")

    def start(self, meta: dict[str, Any]) -> None:
        self.writer.writeheader()

    def add(self, inst: InstanceAudit) -> None:
        self.writer.writerows(flatten(inst.as_dict()))

    def finish(self, summary: Summary, thumbnails: dict[str, bytes | None]) -> None:
        return None


def short(uid: str) -> str:
    """A keyed UID shortened for display (its last 10 digits)."""
    return "…" + uid[-10:] if len(uid) > 14 else uid


class TableSink:
    """Text tables for a terminal or a text file: totals, series, quarantine, flags, decisions."""

    wants_series_thumbnails = False

    def __init__(self, fh: BinaryIO, *, width: int = 160, color: bool = False) -> None:
        self.fh, self.width, self.color = fh, width, color
        self.meta: dict[str, Any] = {}

    def start(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def add(self, inst: InstanceAudit) -> None:
        return None

    def finish(self, summary: Summary, thumbnails: dict[str, bytes | None]) -> None:
        from rich.console import Console
        from rich.table import Table

        buf = io.StringIO()
        console = Console(file=buf, width=self.width, force_terminal=self.color, no_color=not self.color)
        m, t = self.meta, summary.totals()
        console.print(f"Audit (dry run) with profile {m.get('profile')} (options: {', '.join(m.get('options', [])) or 'none'}); "
                      f"values {m.get('values')}; {m.get('selection', '')}.")
        as_run = str(m.get("selection", "")).startswith("as run")
        refused = (f"the engine would refuse {t['quarantined']} of them" if as_run else
                   f"{t['quarantined']} refused by the engine")
        console.print(f"{t['files']} files: {t['would_release']} would be released ({refused}), {t['not_released']} "
                      f"not released; {t['patients']} patients, {t['studies']} studies, {t['series']} series.")
        if t["not_released_by_reason"]:
            console.print("Not released (stage: reason): " + ", ".join(
                f"{key} {n}" for key, n in t["not_released_by_reason"].items()) + ".")
        if t["without_patient_id"]:
            console.print(f"No Patient ID: {t['without_patient_id']} files (flag no-patient-id): no consent can match "
                          "them; `run` holds them unless [consent] without_patient_id = \"release\".")
        verdicts = Table(title="Per study: what a run would release, and why not the rest", title_justify="left")
        for col in ("patient", "study", "files", "would release", "verdict"):
            verdicts.add_column(col, justify="right" if col in ("files", "would release") else "left",
                                no_wrap=col == "patient", overflow="fold")
        for st in summary.studies():
            verdicts.add_row(st["patient"] or "(no header)", short(st["study"]), str(st["instances"]),
                             str(st["released"]), st["verdict"])
        console.print(verdicts)
        studies = Table(title="Per study: attributes by action", title_justify="left")
        for col in ("patient", "study", "series", "files", "quar", *ACTIONS, "flags"):
            studies.add_column(col, justify="left" if col in ("patient", "study") else "right", no_wrap=col == "patient")
        for st in summary.studies():
            studies.add_row(st["patient"], short(st["study"]), str(st["series"]), str(st["instances"]), str(st["quarantined"]),
                            *(str(st["actions"][a]) for a in ACTIONS), str(sum(st["flags"].values())))
        console.print(studies)
        series = Table(title="Per series: attributes by action", title_justify="left")
        for col in ("patient", "study", "series", "mod", "no", "files", "quar", *ACTIONS, "flags"):
            series.add_column(col, justify="right" if col not in ("patient", "study", "series", "mod") else "left",
                              no_wrap=col == "patient")
        for s in summary.series_list():
            series.add_row(s.patient, short(s.study), short(s.series), s.modality, s.series_number, str(s.instances),
                           str(s.quarantined), *(str(s.actions.get(a, 0)) for a in ACTIONS), str(sum(s.flags.values())))
        console.print(series)
        if summary.quarantined:
            q = Table(title="Would be quarantined", title_justify="left")
            for col in ("file", "reason", "detail"):
                q.add_column(col, overflow="fold")
            for row in summary.quarantined:
                q.add_row(row["file"], row["reason"], row["detail"])
            console.print(q)
        flags = summary.flag_list()
        if flags:
            f = Table(title="Residual-risk flags", title_justify="left")
            for col in ("series", "kind", "attribute", "detail", "files"):
                f.add_column(col, overflow="fold", justify="right" if col == "files" else "left")
            for row in flags:
                f.add_row(short(row["series"]), row["kind"], row["path"], row["detail"], str(row["instances"]))
            console.print(f)
        d = Table(title="Decisions per attribute (all released files)", title_justify="left")
        for col in ("attribute", "creator", "action", "code", "rule", "files", "distinct"):
            d.add_column(col, overflow="fold", justify="right" if col in ("files", "distinct") else "left")
        for row in summary.decision_list():
            d.add_row(row["path"], row["private_creator"] or "", row["action"], row["code"], row["rule"],
                      str(row["instances"]), str(row["distinct_values"]))
        console.print(d)
        self.fh.write(buf.getvalue().encode("utf-8"))
