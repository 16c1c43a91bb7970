"""keys rotate-signing (announced under the old key) and rotate-pseudonym (refused without the flag)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from mapping_fixtures import require_binary, run

from sfr_gateway.crypto.sign import PublicKey, verify_file
from sfr_gateway.errors import IntegrityError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.keys.files import load_pseudonym_secret, load_signing_key, secret_fingerprint
from sfr_gateway.ledger import open_ledger


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_signing_announces_the_new_key_under_the_old_one(home: Path, tmp_path: Path, cli) -> None:
    paths = HomePaths(home)
    old_pub_text = paths.signing_pub.read_text()
    old_pub = PublicKey.parse(old_pub_text)
    old_private = paths.signing_key.read_bytes()
    r = cli("--home", home, "keys", "rotate-signing")
    assert r.exit_code == 0, r.stderr

    new_key = load_signing_key(paths)
    new_pub = PublicKey.parse(paths.signing_pub.read_text())
    assert new_pub.key == new_key.public_bytes != old_pub.key
    [statement] = sorted(paths.outbox.glob("signing-key-rotation-*.json"))
    signature = statement.with_name(statement.name + ".minisig")
    sig = verify_file(statement, signature.read_text(), old_pub)
    doc = json.loads(statement.read_text())
    assert sig.trusted_comment.endswith(f"old_key:{doc['old_key_id']}\tnew_key:{doc['new_key_id']}")
    assert doc["new_public_key"] == new_pub.to_base64() and doc["old_public_key"] == old_pub.to_base64()
    assert doc["site"] == "TEST01"
    with pytest.raises(IntegrityError):
        verify_file(statement, signature.read_text(), new_pub)  # signed by the OLD key, not the new one

    archived = [p for p in (paths.keys / "archive").iterdir() if p.suffix == ".key"]
    assert [p.read_bytes() for p in archived] == [old_private]
    assert mode(archived[0]) == 0o600 and mode(paths.signing_key) == 0o600 and mode(paths.keys / "archive") == 0o700
    assert cli("--home", home, "keys", "show", "--public").stdout == paths.signing_pub.read_text()

    # a tampered statement no longer verifies
    forged = tmp_path / statement.name
    forged.write_text(statement.read_text().replace(doc["new_key_id"], "0" * 16))
    with pytest.raises(IntegrityError):
        verify_file(forged, signature.read_text(), old_pub)
    with open_ledger(paths.state_db) as ledger:
        [event] = [e for e in ledger.events(20) if e["command"] == "keys rotate-signing"]
    assert event["detail"]["new_key_id"] == doc["new_key_id"]


def test_rotation_statement_verifies_with_debian_minisign(home: Path, tmp_path: Path, cli) -> None:
    minisign = require_binary("minisign")
    paths = HomePaths(home)
    old_pub = tmp_path / "old.pub"
    old_pub.write_text(paths.signing_pub.read_text())
    assert cli("--home", home, "keys", "rotate-signing").exit_code == 0
    [statement] = sorted(paths.outbox.glob("signing-key-rotation-*.json"))
    done = run([minisign, "-V", "-p", str(old_pub), "-m", str(statement)])
    assert done.returncode == 0, done.stderr
    assert b"type:signing-key-rotation" in done.stdout
    new_pub = tmp_path / "new.pub"
    new_pub.write_text(paths.signing_pub.read_text())
    assert run([minisign, "-V", "-p", str(new_pub), "-m", str(statement)]).returncode != 0


def test_rotate_pseudonym_is_refused_without_the_flag(home: Path, cli) -> None:
    paths = HomePaths(home)
    before = paths.pseudonym_key.read_bytes()
    r = cli("--home", home, "keys", "rotate-pseudonym")
    assert r.exit_code == 4 and "--i-understand-linkage-breaks" in r.stderr
    assert paths.pseudonym_key.read_bytes() == before
    assert not (paths.keys / "archive").exists()
    with open_ledger(paths.state_db) as ledger:
        [event] = [e for e in ledger.events(20) if e["command"] == "keys rotate-pseudonym"]
    assert event["result"] == "refused"


def test_rotate_pseudonym_with_the_flag_archives_and_records(home: Path, cli) -> None:
    paths = HomePaths(home)
    old = load_pseudonym_secret(paths)
    r = cli("--home", home, "keys", "rotate-pseudonym", "--i-understand-linkage-breaks")
    assert r.exit_code == 0, r.stderr
    new = load_pseudonym_secret(paths)
    assert new != old and len(new) == 32
    [archived] = (paths.keys / "archive").glob("pseudonym-*.key")
    assert mode(archived) == 0o600 and archived.read_text().split()[-1] == old.hex()
    with open_ledger(paths.state_db) as ledger:
        [event] = [e for e in ledger.events(20) if e["command"] == "keys rotate-pseudonym"]
    assert event["result"] == "ok"
    assert event["detail"]["old_fingerprint"] == secret_fingerprint(old)
    assert event["detail"]["new_fingerprint"] == secret_fingerprint(new)
    assert old.hex() not in json.dumps(event) and new.hex() not in json.dumps(event)


def test_exposed_archived_secret_is_refused(home: Path, cli) -> None:
    assert cli("--home", home, "keys", "rotate-pseudonym", "--i-understand-linkage-breaks").exit_code == 0
    [archived] = (HomePaths(home).keys / "archive").glob("pseudonym-*.key")
    archived.chmod(0o644)
    r = cli("--home", home, "mapping", "verify")
    assert r.exit_code == 4 and "chmod 600" in r.stderr
