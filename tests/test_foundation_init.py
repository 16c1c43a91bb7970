"""init: HOME layout, key files and their permissions, no overwrite, refusal on exposed keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sfr_gateway.crypto.sign import PublicKey
from sfr_gateway.errors import EXIT_CODES, ConfigError
from sfr_gateway.home.config import HomePaths, load_config
from sfr_gateway.keys.files import load_pseudonym_secret, load_signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_home_with_private_keys(home: Path) -> None:
    paths = HomePaths(home)
    assert mode(paths.keys) == 0o700
    assert mode(paths.pseudonym_key) == 0o600
    assert mode(paths.signing_key) == 0o600
    assert mode(paths.config) == 0o600
    assert paths.quarantine.is_dir() and paths.outbox.is_dir() and paths.state_db.is_file()
    assert len(load_pseudonym_secret(paths)) == 32
    config = load_config(home)
    assert config.site_id == "TEST01"
    assert config.consent.mode == "explicit"
    assert config.effective_destination.startswith("file://")


def test_init_prints_public_key_that_matches_private_key(tmp_path: Path, cli) -> None:
    result = cli("--home", tmp_path / "h", "init", "--site-id", "TEST01", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    signing = load_signing_key(HomePaths(tmp_path / "h"))
    public = PublicKey.parse(data["signing_public_key"])
    assert public.key == signing.public_bytes and public.key_id == signing.key_id
    assert data["signing_key_id"] in data["signing_public_key"]
    secret = (tmp_path / "h" / "keys" / "pseudonym.key").read_text()
    assert data["pseudonym_secret_fingerprint"] not in secret


def test_init_twice_refuses_and_keeps_keys(home: Path, cli) -> None:
    paths = HomePaths(home)
    before = paths.pseudonym_key.read_bytes(), paths.signing_key.read_bytes()
    result = cli("--home", home, "init", "--site-id", "TEST01")
    assert result.exit_code == ConfigError.exit_code
    assert "already initialised" in result.stderr
    assert (paths.pseudonym_key.read_bytes(), paths.signing_key.read_bytes()) == before


def test_init_keeps_existing_keys_when_config_is_missing(home: Path, cli) -> None:
    paths = HomePaths(home)
    before = paths.pseudonym_key.read_bytes(), paths.signing_key.read_bytes()
    paths.config.unlink()
    result = cli("--home", home, "init", "--site-id", "TEST02")
    assert result.exit_code == 0, result.stderr
    assert "existing, kept" in result.stdout
    assert (paths.pseudonym_key.read_bytes(), paths.signing_key.read_bytes()) == before


@pytest.mark.parametrize("target", ["keys", "keys/pseudonym.key", "keys/site-signing.key"])
def test_every_command_refuses_exposed_keys(home: Path, cli, tmp_path: Path, target: str) -> None:
    path = home / target
    os.chmod(path, 0o750 if path.is_dir() else 0o640)
    result = cli("--home", home, "scan", tmp_path)
    assert result.exit_code == 4
    assert "chmod" in result.stderr and str(path) in result.stderr


@pytest.mark.parametrize("site_id", ["", "x", "lower", "WITH SPACE", "A" * 40])
def test_init_rejects_bad_site_ids(tmp_path: Path, cli, site_id: str) -> None:
    result = cli("--home", tmp_path / "h", "init", "--site-id", site_id)
    assert result.exit_code == 3
    assert not (tmp_path / "h" / "keys").exists()


def test_init_rejects_a_bad_recipient(tmp_path: Path, cli) -> None:
    result = cli("--home", tmp_path / "h", "init", "--site-id", "TEST01", "--central-recipient", "age1nope")
    assert result.exit_code == 3
    assert "age" in result.stderr


def test_commands_without_init_say_how_to_fix(tmp_path: Path, cli) -> None:
    result = cli("--home", tmp_path / "none", "scan", tmp_path)
    assert result.exit_code == 3
    assert "init --site-id" in result.stderr


def test_home_from_environment(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFR_GATEWAY_HOME", str(tmp_path / "envhome"))
    assert cli("init", "--site-id", "TEST01").exit_code == 0
    assert (tmp_path / "envhome" / "config.toml").is_file()


def test_default_home_is_platform_data_dir(tmp_path: Path, cli) -> None:
    assert cli("init", "--site-id", "TEST01").exit_code == 0
    assert (tmp_path / "xdg" / "sfr-gateway" / "config.toml").is_file()


def test_exit_code_table_is_documented_in_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, f"exit code {code} missing from the README table"
