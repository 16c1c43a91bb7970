"""Fault campaign, malformed inputs: a seeded, bounded fuzz run (the long one is
``benchmarks/fuzz_campaign.py``).

Invariant (issue 9): for every mutated input, the header scan and de-identification either accept
it or refuse it with a ``DicomError``; never another exception, never over the time budget or the
memory limit of the checking child; a released output re-reads with pydicom at every depth and is
``verify``-clean against its own source.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from faults_fuzz import Tally, elements, inputs_for, mutations, run_campaign, seeds

from sfr_gateway.home.config import SelectionRules
from sfr_gateway.ledger import open_ledger
from sfr_gateway.scan.walk import scan

SEED = 20261129
KINDS = {"truncate-at-header", "truncate-in-header", "truncate-in-value", "truncate-preamble", "flip-length",
         "huge-length", "undefined-length", "sequence-open", "bogus-vr", "wrong-charset", "deep-nesting", "havoc"}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tally, Path]:
    rng = random.Random(SEED)
    work = tmp_path_factory.mktemp("fuzz")
    seed_files = seeds(work / "generated", bundled=3, rng=rng)
    tally = run_campaign(inputs_for(seed_files, rng, limit=5, per_seed=55), work, processes=2)
    return tally, work / "in"


def test_every_malformed_input_is_released_or_refused_with_a_reason(campaign: tuple[Tally, Path]) -> None:
    tally, _ = campaign
    assert tally.inputs >= 600
    findings = [f"{name}: {o.stage} {o.status} {o.detail}" for name, _, o in tally.findings]
    assert findings == []
    assert set(tally.by_kind) >= KINDS
    for stage in ("scan", "deid"):  # the campaign exercised both outcomes of both stages
        assert tally.by_status.get(f"{stage}:released", 0) > 20
        assert tally.by_status.get(f"{stage}:refused", 0) > 200
    assert tally.by_status["deid:released"] + tally.by_status["deid:refused"] == tally.inputs


def test_the_library_scan_indexes_a_folder_of_fuzzed_files_and_counts_every_one(
        campaign: tuple[Tally, Path], tmp_path: Path) -> None:
    _, folder = campaign
    files = sorted(folder.iterdir())
    with open_ledger(tmp_path / "state.db") as ledger:
        result = scan(ledger, [folder], SelectionRules(), workers=2)
    assert result.complete
    assert result.seen == len(files) and result.read == len(files)
    assert 0 < result.unreadable < len(files)


def test_the_structure_walker_finds_every_boundary_of_a_generated_ct(tmp_path: Path) -> None:
    rng = random.Random(1)
    (_, data), *_ = [s for s in seeds(tmp_path, bundled=0, rng=rng) if s[0].startswith("sample-ser")]
    found = elements(data)
    assert found[0].tag == 0x00020000 or found[0].tag >> 16 == 2
    assert any(e.vr == b"SQ" for e in found) and any(e.depth >= 1 for e in found)  # nested items walked
    assert any(e.tag == 0x7FE00010 for e in found)
    kinds = {k for k, _ in mutations(data, rng, limit=2)}
    assert kinds >= KINDS
