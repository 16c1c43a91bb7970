"""Fixtures and helpers of the consent tests: a real ledger, indexed studies, a real signer."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sfr_gateway.consent.registry import Withdrawer, minisign_signer
from sfr_gateway.crypto.signkey import SigningKey
from sfr_gateway.ledger import Ledger, open_ledger
from sfr_gateway.ledger import instances as isql
from sfr_gateway.ledger.instances import HeaderFacts

TODAY = dt.date(2026, 6, 15)
TEST_SECRET = b"\x42" * 32


def test_pseudonym(patient_id: str, issuer: str) -> str:
    """A keyed stand-in for the engine's patient pseudonym (the engine is another branch)."""
    digest = hmac.new(TEST_SECRET, b"patient\x00" + f"{patient_id}\x00{issuer}".encode(), hashlib.sha256)
    return "TEST01-" + digest.hexdigest()[:12].upper()


test_pseudonym.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# Fixture functions carry a different name than the fixture so test modules can import them
# without their parameters shadowing the import (ruff F811).


@pytest.fixture(name="ledger")
def ledger_fixture(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "state.db") as led:
        yield led


@pytest.fixture(name="signing_key")
def signing_key_fixture() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


@pytest.fixture(name="withdrawer")
def withdrawer_fixture(signing_key: SigningKey) -> Withdrawer:
    return Withdrawer(site_id="TEST01", pseudonym_for=test_pseudonym, signer=minisign_signer(signing_key, "TEST01"))


def add_studies(ledger: Ledger, studies: list[tuple[str, str, str]], *, eligible: bool = True,
                instances: int = 2) -> None:
    """Index ``instances`` CT instances for each (patient_id, issuer, study_uid)."""
    scan_id = isql.start_scan(ledger, [b"/fake"])
    rows = []
    for pid, issuer, study in studies:
        for n in range(instances):
            facts = HeaderFacts(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=f"{study}.{n}", patient_id=pid,
                issuer=issuer, study_uid=study, series_uid=f"{study}.1", modality="CT", body_part="CHEST",
                study_date="20200401", study_description="TDM THORAX", series_description="AXIAL",
                protocol_name="", image_type="ORIGINAL\\PRIMARY\\AXIAL", series_number=1, frames=1,
                transfer_syntax="1.2.840.10008.1.2.1",
            )
            rows.append((f"/fake/{study}/{n}.dcm".encode(), 100, 1, facts, None if eligible else "not-chest"))
    isql.record_indexed(ledger, scan_id, rows)
    isql.finish_scan(ledger, scan_id, "complete")


def event_details(ledger: Ledger) -> str:
    """Every consent event's detail, as one JSON string (to check no patient value leaked)."""
    return json.dumps([e for e in ledger.events(limit=10_000) if e["command"] == "consent"])
