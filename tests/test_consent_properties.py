"""Property: any sequence of recorded statuses gives the gate a model's answer, in both modes."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from consent_fixtures import add_studies, test_pseudonym
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfr_gateway.consent import registry as lib
from sfr_gateway.crypto.signkey import SigningKey
from sfr_gateway.errors import ConsentError
from sfr_gateway.home.config import ConsentPolicy
from sfr_gateway.ledger import open_ledger

BASE = dt.date(2026, 1, 1)
PATIENTS = ("A", "B", "C")
WITHDRAWER = lib.Withdrawer("TEST01", test_pseudonym, lib.minisign_signer(SigningKey(Ed25519PrivateKey.generate()), "TEST01"))

operations = st.lists(
    st.tuples(st.sampled_from(PATIENTS), st.sampled_from(lib.STATUSES), st.integers(0, 60)), max_size=12)


class Model:
    """What the registry should say: latest (date, order) record wins; withdrawal is forever."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[int, int, str]]] = {p: [] for p in PATIENTS}
        self.withdrawn: set[str] = set()
        self.requests = 0

    def apply(self, patient: str, status: str, day: int, seq: int) -> bool:
        """False when the registry must refuse it."""
        if patient in self.withdrawn:
            return status == "withdrawn"
        current = max(self.records[patient], default=None)
        if status != "withdrawn" and current is not None and (current[0], current[2]) == (day, status):
            return True
        self.records[patient].append((day, seq, status))
        if status == "withdrawn":
            self.withdrawn.add(patient)
            self.requests += 1
        return True

    def releasable(self, patient: str, policy: ConsentPolicy, today: int) -> bool:
        if patient in self.withdrawn or not self.records[patient]:
            return False
        day, _, status = max(self.records[patient])
        if status == "consented":
            return True
        return status == "informed" and policy.mode == "non-opposition" and day + policy.delay_days <= today


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, today=st.integers(60, 120), delay=st.integers(0, 90))
def test_gate_matches_the_model(ops: list[tuple[str, str, int]], today: int, delay: int) -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as tmp, open_ledger(Path(tmp) / "state.db") as ledger:
        add_studies(ledger, [(p, "", f"1.{p}") for p in PATIENTS], instances=1)
        for seq, (patient, status, day) in enumerate(ops):
            allowed = model.apply(patient, status, day, seq)
            effective = BASE + dt.timedelta(days=day)
            try:
                lib.set_status(ledger, patient, status, effective=effective, today=BASE + dt.timedelta(days=today),
                               withdrawer=WITHDRAWER)
            except ConsentError:
                assert not allowed
            else:
                assert allowed
        on = BASE + dt.timedelta(days=today)
        for policy in (ConsentPolicy("explicit", delay), ConsentPolicy("non-opposition", delay)):
            expected = sorted(f"1.{p}" for p in PATIENTS if model.releasable(p, policy, today))
            assert lib.releasable_studies(ledger, policy, on) == expected
        assert len(lib.withdrawal_requests(ledger)) == model.requests
