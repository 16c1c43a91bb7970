"""De-identification engine: PS3.15 Annex E profiles compiled to plans, applied with keyed pseudonyms.

Library use::

    from sfr_gateway.deid import PseudonymKeys, compile_plan, deidentify_file, load_profile

    plan = compile_plan(load_profile("sfr-covid"))
    keys = PseudonymKeys(secret=secret_bytes, site_id="SFR042")
    result = deidentify_file(path, plan, keys)   # result.data: bytes; result.changes: records
"""

from sfr_gateway.deid.engine import Change
from sfr_gateway.deid.files import (
    DeidResult,
    deidentify_dataset,
    deidentify_file,
    read_dataset,
    serialise,
)
from sfr_gateway.deid.plan import Plan
from sfr_gateway.deid.profile import (
    DEFAULT_PROFILE,
    Profile,
    available_profiles,
    compile_plan,
    load_profile,
)
from sfr_gateway.deid.pseudonym import Pseudonymizer, PseudonymKeys

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
