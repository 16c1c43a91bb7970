"""What the consent statuses are and which of them lets a study go: the statuses, the release
modes, the reasons a study waits, the checks on recorded identifiers and dates.

Pure rules (no ledger): the gate, the registry and the CSV import all decide with them.
"""

from __future__ import annotations

import datetime as dt
import re

from ..errors import ConsentError
from ..home.config import ConsentPolicy

STATUSES = ("unknown", "informed", "consented", "refused", "withdrawn")
MODES = ("explicit", "non-opposition")
MAX_ID_LENGTH = 64  # DICOM LO, the VR of PatientID and IssuerOfPatientID
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Why an eligible study is not releasable (keys of coverage's ``waiting``).
WAITING_REASONS = {
    "unknown": "no consent recorded",
    "informed": "informed only; explicit mode needs consented",
    "informed-in-delay": "informed; the non-opposition delay has not elapsed",
    "refused": "refused",
    "withdrawn": "withdrawn (permanent)",
    "no-patient-id": "no Patient ID (held: [consent] without_patient_id = \"hold\")",
}


def check_policy(policy: ConsentPolicy) -> None:
    if policy.mode not in MODES:
        raise ConsentError(f"consent mode must be one of {', '.join(MODES)}")
    if policy.delay_days < 0:
        raise ConsentError("consent delay_days must be >= 0")


def classify(status: str, effective: str | None, withdrawn: bool, policy: ConsentPolicy, today: dt.date) -> str:
    """``releasable``, or the key of ``WAITING_REASONS`` that says why not."""
    if withdrawn or status == "withdrawn":
        return "withdrawn"
    if status == "consented":
        return "releasable"
    if status == "informed" and policy.mode == "non-opposition":
        if effective and dt.date.fromisoformat(effective) + dt.timedelta(days=policy.delay_days) <= today:
            return "releasable"
        return "informed-in-delay"
    return status if status in WAITING_REASONS else "unknown"


def check_patient_id(value: str, what: str = "patient ID") -> str:
    """Strip and validate a local identifier; the error never repeats the value."""
    value = (value or "").strip()
    if not value and what == "patient ID":
        raise ConsentError(f"empty {what}")
    if len(value) > MAX_ID_LENGTH:
        raise ConsentError(f"{what} longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise ConsentError(f"control character in {what}")
    return value


def check_effective(effective: dt.date | None, today: dt.date) -> dt.date:
    if effective is None:
        return today
    if effective > today:
        raise ConsentError("the effective date is in the future")
    return effective
