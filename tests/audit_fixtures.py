"""Helpers shared by the audit tests (``tests/test_audit_*.py``)."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from sfr_gateway.audit import AuditSettings, run_audit
from sfr_gateway.deid import PseudonymKeys, compile_plan, load_profile
from sfr_gateway.deid.plan import Plan
from sfr_gateway.sample import FakePatient, SampleExport, generate_export

SECRET = bytes(range(7, 39))
KEYS = PseudonymKeys(SECRET, "TEST01")


def plan_for(name: str, *options: str) -> Plan:
    """A compiled packaged profile with extra options."""
    return compile_plan(load_profile(name, options=options))


def audit_json(sources: list[Path], plan: Plan, *, reveal: bool = False, keys: PseudonymKeys = KEYS) -> dict[str, Any]:
    """Run the audit through the library and parse its JSON report."""
    buf = io.BytesIO()
    run_audit(sources, plan, keys, buf, "json", settings=AuditSettings(reveal=reveal))
    data: dict[str, Any] = json.loads(buf.getvalue().decode("utf-8"))
    return data


def fold(text: str) -> str:
    """Accent- and case-insensitive form (an oracle independent of the engine's own)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def planted_tokens(patients: list[FakePatient]) -> list[tuple[str, str]]:
    """(kind, token) of every PHI token planted in the export, whole values and name parts."""
    out = []
    for p in patients:
        for kind, values in p.tokens.items():
            for value in values:
                for part in {value, *value.replace("^", " ").split()} if kind in ("name", "physician") else {value}:
                    if len(part) >= 3:
                        out.append((kind, part))
        out.append(("name", p.name))
    return out


def leaks(text: str, tokens: list[tuple[str, str]]) -> list[str]:
    """Kinds of the planted tokens found in ``text`` (accent- and case-insensitive)."""
    folded = fold(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", text))  # pixels are not text
    return sorted({kind for kind, token in tokens if fold(token) in folded})


def make_small_export(tmp_path_factory: pytest.TempPathFactory) -> SampleExport:
    """A small export (3 patients, 3 slices per series, 32x32): treat it as read-only."""
    return generate_export(tmp_path_factory.mktemp("audit-export"), patients=3, seed=11, rows=32, cols=32, slices=3)
