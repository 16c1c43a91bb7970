"""keys show / escrow / restore: the public key file, the escrowed secret, identical pseudonyms."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pydicom
from mapping_fixtures import age_identity, require_binary, run

from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.deid import compile_plan, deidentify_file, load_profile
from sfr_gateway.deid.pseudonym import PseudonymKeys
from sfr_gateway.home.config import HomePaths
from sfr_gateway.keys.files import load_pseudonym_secret, load_signing_key, secret_fingerprint
from sfr_gateway.ledger import open_ledger
from sfr_gateway.sample import SampleExport


def test_keys_show_public_prints_the_minisign_public_key_file(home: Path, cli) -> None:
    paths = HomePaths(home)
    r = cli("--home", home, "keys", "show", "--public")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == paths.signing_pub.read_text()
    assert PublicKey.parse(r.stdout).key == load_signing_key(paths).public_bytes
    r = cli("--home", home, "keys", "show", "--json")
    facts = json.loads(r.stdout)
    assert facts["signing_key_id"] in facts["signing_public_key"]
    assert facts["pseudonym_secret_fingerprint"] == secret_fingerprint(load_pseudonym_secret(paths))
    r = cli("--home", home, "keys", "show")
    assert facts["signing_key_id"] in r.stdout and facts["pseudonym_secret_fingerprint"] in r.stdout


def test_keys_show_refuses_exposed_keys(home: Path, cli) -> None:
    HomePaths(home).pseudonym_key.chmod(0o644)
    assert cli("--home", home, "keys", "show", "--public").exit_code == 4


def _pseudonymise(home: Path, src: Path) -> tuple[str, str, str]:
    secret = load_pseudonym_secret(HomePaths(home))
    result = deidentify_file(src, compile_plan(load_profile("sfr-covid")), PseudonymKeys(secret, "TEST01"), write=False)
    return result.patient_pseudonym, result.study_uid, result.sop_uid


def test_escrow_then_restore_on_a_new_home_gives_identical_pseudonyms(home: Path, tmp_path: Path, cli,
                                                                      sample_export: SampleExport) -> None:
    key, recipient = age_identity(tmp_path, "custodian")
    escrowed = tmp_path / "vault" / "secret.age"
    r = cli("--home", home, "keys", "escrow", "--recipient", recipient, "--output", escrowed)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE(escrowed.stat().st_mode) == 0o600
    secret_file = HomePaths(home).pseudonym_key.read_text()
    assert secret_file.split()[-1].encode() not in escrowed.read_bytes()

    new_home = tmp_path / "new-home"
    r = cli("--home", new_home, "keys", "restore", escrowed, "--identity", key)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE(HomePaths(new_home).pseudonym_key.stat().st_mode) == 0o600
    r = cli("--home", new_home, "init", "--site-id", "TEST01")
    assert r.exit_code == 0, r.stderr
    assert "(existing, kept)" in r.stdout
    assert HomePaths(new_home).pseudonym_key.read_text() == secret_file

    chest = next(f for f in sorted(sample_export.files) if pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID
                 == "1.2.840.10008.5.1.4.1.1.2")  # a CT image
    assert _pseudonymise(new_home, chest) == _pseudonymise(home, chest)
    other = tmp_path / "other-home"
    assert cli("--home", other, "init", "--site-id", "TEST01").exit_code == 0
    assert _pseudonymise(other, chest)[0] != _pseudonymise(home, chest)[0]

    # restoring the same secret again is a no-op; into a HOME with another secret, refused
    r = cli("--home", new_home, "keys", "restore", escrowed, "--identity", key)
    assert r.exit_code == 0 and "already present" in r.stdout
    before = HomePaths(other).pseudonym_key.read_bytes()
    r = cli("--home", other, "keys", "restore", escrowed, "--identity", key)
    assert r.exit_code == 4 and "refusing to overwrite" in r.stderr
    assert HomePaths(other).pseudonym_key.read_bytes() == before
    with open_ledger(HomePaths(other).state_db) as ledger:
        assert [e["result"] for e in ledger.events(10) if e["command"] == "keys restore"] == ["refused"]


def test_escrow_opens_with_debian_age(home: Path, tmp_path: Path, cli) -> None:
    age_bin = require_binary("age")
    key, recipient = age_identity(tmp_path)
    out = tmp_path / "s.age"
    assert cli("--home", home, "keys", "escrow", "--recipient", recipient, "-o", out).exit_code == 0
    done = run([age_bin, "-d", "-i", str(key), str(out)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == HomePaths(home).pseudonym_key.read_text()


def test_restore_with_the_wrong_identity_fails(home: Path, tmp_path: Path, cli) -> None:
    _, recipient = age_identity(tmp_path, "a")
    wrong, _ = age_identity(tmp_path, "b")
    out = tmp_path / "s.age"
    assert cli("--home", home, "keys", "escrow", "--recipient", recipient, "-o", out).exit_code == 0
    r = cli("--home", tmp_path / "h2", "keys", "restore", out, "--identity", wrong)
    assert r.exit_code == 12
    assert not HomePaths(tmp_path / "h2").pseudonym_key.exists()
