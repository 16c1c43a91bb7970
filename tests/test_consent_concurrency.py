"""A consent import running in another process while the gate is queried in a loop.

The other process runs the real CLI (``sfr_gateway.cli.main``) against the same HOME, flipping
every patient between consented and refused, one file (one transaction) at a time, and withdraws
one patient halfway. The gate must only ever see a whole file applied or not at all, must never
release the withdrawn patient once the withdrawal is committed, and the ledger must stay intact.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from consent_fixtures import add_studies

from sfr_gateway.consent import registry as lib
from sfr_gateway.home.config import ConsentPolicy, load_config
from sfr_gateway.ledger import open_ledger

PATIENTS = 20
ROUNDS = 12

CHILD = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from consent_fixtures import test_pseudonym
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sfr_gateway.consent import registry as lib
    from sfr_gateway.cli import main
    from sfr_gateway.crypto.signkey import SigningKey
    from sfr_gateway.ledger import open_ledger

    home, rounds, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    for i in range(rounds):
        for name in ("consented.csv", "refused.csv"):
            code = main(["--home", home, "consent", "import", str(Path(home) / name), "--json"])
            assert code == 0, code
        if i == rounds // 2:
            w = lib.Withdrawer("TEST01", test_pseudonym, lib.minisign_signer(SigningKey(Ed25519PrivateKey.generate()), "TEST01"))
            with open_ledger(Path(home) / "state.db") as led:
                lib.withdraw(led, "P00", w, issuer="CHU", today=dt.date.today())
            marker.write_text("withdrawn")
""")


def test_concurrent_import_never_leaks_an_unconsented_study(home: Path, tmp_path: Path) -> None:
    config = load_config(home)
    policy = ConsentPolicy("explicit", 30)
    with open_ledger(config.home.state_db) as ledger:
        add_studies(ledger, [(f"P{i:02d}", "CHU", f"1.2.{i}") for i in range(PATIENTS)], instances=1)
    for status in ("consented", "refused"):
        lines = ["patient_id;issuer;status;date;source"]
        lines += [f"P{i:02d};CHU;{status};2026-01-05;test" for i in range(PATIENTS)]
        (home / f"{status}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    marker = tmp_path / "withdrawn.marker"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(ROUNDS), str(marker), str(Path(__file__).parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    everyone = {f"1.2.{i}" for i in range(PATIENTS)}
    seen: dict[str, int] = {"all": 0, "none": 0, "all-but-withdrawn": 0}
    queries = 0
    with open_ledger(config.home.state_db) as ledger:
        while child.poll() is None or queries == 0:
            withdrawn_committed = marker.exists()  # read before the snapshot is taken
            released = set(lib.releasable_studies(ledger, policy, dt.date.today()))
            queries += 1
            if withdrawn_committed:
                assert "1.2.0" not in released, "a withdrawn patient's study went through"
            if released == everyone:
                seen["all"] += 1
            elif released == everyone - {"1.2.0"}:
                seen["all-but-withdrawn"] += 1
            elif not released:
                seen["none"] += 1
            else:
                raise AssertionError(f"half-applied import seen by the gate: {len(released)} studies released")
        assert child.wait(timeout=120) == 0, child.stderr.read().decode() if child.stderr else ""
        assert ledger.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = ledger.conn.execute("SELECT COUNT(*) FROM consent_records").fetchone()[0]
        # every import flips every non-withdrawn patient (one record each), plus one withdrawal record
        assert records == ROUNDS * 2 * PATIENTS - (ROUNDS - 1 - ROUNDS // 2) * 2 + 1
        assert len(lib.withdrawal_requests(ledger)) == 1
        imports = [e for e in ledger.events(limit=10_000) if e["action"] == "import"]
        assert len(imports) == ROUNDS * 2
        assert lib.releasable_studies(ledger, policy, dt.date.today()) == []  # the last file applied refuses all
    assert queries > 5
    assert seen["none"] > 0 and seen["all"] + seen["all-but-withdrawn"] > 0, seen
