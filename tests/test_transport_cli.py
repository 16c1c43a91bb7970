"""``sfr-gateway destination check`` against a real tus server and a drop folder."""

from __future__ import annotations

import json
from pathlib import Path

pytest_plugins = ["transport_fixtures"]


def _set_transport(home: Path, destination: str, transport: str) -> None:
    config = home / "config.toml"
    text = config.read_text()
    text = text.replace('destination = ""', f'destination = "{destination}"', 1)
    text = text.replace("[transport]\n", f"[transport]\n{transport}\n", 1)
    config.write_text(text)


def test_destination_check_tus_token_and_exit_codes(cli, home: Path, tmp_path: Path, tus_server) -> None:
    server = tus_server("--checksum", "--token", "t0k")
    token = tmp_path / "token"
    token.write_text("t0k\n")
    token.chmod(0o600)
    _set_transport(home, server.url, f'bearer_token_file = "{token}"\nretries = 0')
    result = cli("--home", home, "destination", "check", "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["kind"] == "tus" and facts["checksum"] == "sha256"
    token.write_text("wrong\n")
    result = cli("--home", home, "destination", "check")
    assert result.exit_code == 11 and "credentials" in result.stderr and "wrong" not in result.stderr
    server.stop()
    result = cli("--home", home, "destination", "check")
    assert result.exit_code == 10


def test_destination_check_default_drop_folder_and_bad_config(cli, home: Path) -> None:
    result = cli("--home", home, "destination", "check")  # init made the default drop folder
    assert result.exit_code == 0 and "drop folder OK" in result.stdout
    (home / "dropbox").rmdir()  # a missing folder (an unmounted share) is an error, not created
    result = cli("--home", home, "destination", "check")
    assert result.exit_code == 10 and "does not exist" in result.stderr
    (home / "dropbox").mkdir()
    _set_transport(home, "", "verify = false")
    result = cli("--home", home, "destination", "check")
    assert result.exit_code == 3 and "unknown [transport] keys" in result.stderr
