"""Every secret file gets the keys' refusal when group or others can read it (exit 4).

Before issue 19 only keys/ was checked: the bearer-token file, the TLS client key, the central
host's age identity, a custodian's identity and the archived keys in keys/archive/ were read
whatever their mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sfr_gateway import central
from sfr_gateway.crypto import age
from sfr_gateway.errors import KeyFileError
from sfr_gateway.home.config import HomePaths
from sfr_gateway.transport import TransportSettings


def exposed(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_bearer_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    token = exposed(tmp_path / "token", "s3cret\n")
    with pytest.raises(KeyFileError, match="chmod 600") as err:
        TransportSettings.from_config({"bearer_token_file": str(token)})
    assert "s3cret" not in str(err.value)
    token.chmod(0o600)
    assert TransportSettings.from_config({"bearer_token_file": str(token)}).bearer_token == "s3cret"


def test_tls_client_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    cert = exposed(tmp_path / "client.pem", "cert")
    key = exposed(tmp_path / "client.key", "key")
    with pytest.raises(KeyFileError, match="client_key"):
        TransportSettings.from_config({"client_cert": str(cert), "client_key": str(key)})
    key.chmod(0o600)
    assert TransportSettings.from_config({"client_cert": str(cert), "client_key": str(key)}).client_key == key


def test_destination_check_exits_4_on_an_exposed_token(cli, home: Path, tmp_path: Path) -> None:
    token = exposed(tmp_path / "token", "t0k\n")
    config = home / "config.toml"
    config.write_text(config.read_text().replace("[transport]\n", f'[transport]\nbearer_token_file = "{token}"\n', 1))
    result = cli("--home", home, "destination", "check")
    assert result.exit_code == KeyFileError.exit_code == 4
    assert "chmod 600" in result.stderr and "t0k" not in result.stderr


def test_central_identity_readable_by_others_is_refused(tmp_path: Path) -> None:
    identity = exposed(tmp_path / "central.key", age.identity_file_text(age.Identity.generate()))
    with pytest.raises(KeyFileError, match="readable by group or others"):
        central.load_identities(identity)
    identity.chmod(0o600)
    assert len(central.load_identities(identity)) == 1


def test_custodian_identity_readable_by_others_is_refused_on_restore(home: Path, tmp_path: Path, cli) -> None:
    custodian = age.Identity.generate()
    escrowed = tmp_path / "secret.age"
    assert cli("--home", home, "keys", "escrow", "--recipient", str(custodian.recipient),
               "--output", escrowed).exit_code == 0
    identity = exposed(tmp_path / "custodian.key", age.identity_file_text(custodian))
    result = cli("--home", tmp_path / "new", "keys", "restore", escrowed, "--identity", identity)
    assert result.exit_code == 4 and "chmod 600" in result.stderr
    identity.chmod(0o600)
    assert cli("--home", tmp_path / "new", "keys", "restore", escrowed, "--identity", identity).exit_code == 0


def test_an_archived_key_readable_by_others_is_refused(home: Path, cli) -> None:
    assert cli("--home", home, "keys", "rotate-signing").exit_code == 0
    archived = next((HomePaths(home).keys / "archive").glob("*.key"))
    archived.chmod(0o644)
    result = cli("--home", home, "keys", "show")
    assert result.exit_code == 4 and str(archived) in result.stderr
    archived.chmod(0o600)
    (HomePaths(home).keys / "archive").chmod(0o755)
    result = cli("--home", home, "keys", "show")
    assert result.exit_code == 4 and "chmod 700" in result.stderr
