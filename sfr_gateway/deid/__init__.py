"""De-identification engine: PS3.15 Annex E profiles compiled to plans, applied with keyed pseudonyms.

Library use::

    from sfr_gateway.deid import PseudonymKeys, compile_plan, deidentify_file, load_profile

    plan = compile_plan(load_profile("sfr-covid"))
    keys = PseudonymKeys(secret=secret_bytes, site_id="SFR042")
    result = deidentify_file(path, plan, keys)   # result.data: bytes; result.changes: records
"""

from __future__ import annotations

import importlib
from typing import Any

# Exported names and the module that defines each: imported on first use, so that importing a
# light submodule (e.g. ``sfr_gateway.deid.pseudonym``) does not load pydicom and the engine.
_EXPORTS = {
    "Change": "engine",
    "DeidResult": "files",
    "deidentify_dataset": "files",
    "deidentify_file": "files",
    "read_dataset": "files",
    "serialise": "files",
    "Plan": "plan",
    "DEFAULT_PROFILE": "profile",
    "Profile": "profile",
    "available_profiles": "profile",
    "compile_plan": "profile",
    "load_profile": "profile",
    "Pseudonymizer": "pseudonym",
    "PseudonymKeys": "pseudonym",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sfr_gateway.deid.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sfr_gateway.deid' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PROFILE",
    "Change",
    "DeidResult",
    "Plan",
    "Profile",
    "PseudonymKeys",
    "Pseudonymizer",
    "available_profiles",
    "compile_plan",
    "deidentify_dataset",
    "deidentify_file",
    "load_profile",
    "read_dataset",
    "serialise",
]
