"""Upload state in the ledger, transport settings from config, backoff and Retry-After."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfr_gateway.errors import ConfigError
from sfr_gateway.ledger import open_ledger
from sfr_gateway.ledger.uploads import list_uploads
from sfr_gateway.transport import Receipt, TransportSettings, UploadState
from sfr_gateway.transport.retry import backoff_delay, parse_retry_after
from sfr_gateway.transport.state import SqliteUploadState

pytest_plugins = ["transport_fixtures"]


def receipt(batch_id: str, size: int = 10) -> Receipt:
    return Receipt(batch_id=batch_id, destination="https://c.example/files/", location="https://c.example/files/u1",
                   signature_location="https://c.example/files/u0", sha256="ab" * 32, size=size, bytes_sent=size,
                   resumed_from=0, already_complete=False, completed_at="2026-01-01T00:00:00+00:00")


def test_state_survives_a_new_connection_and_done_is_final(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    url = "https://user:pw@c.example/files/?token=x"
    with open_ledger(db) as led:
        state = SqliteUploadState(led, url)
        assert isinstance(state, UploadState)
        assert state.load("B1") is None
        state.save("B1", "https://c.example/files/u1", 0)
        state.save("B1", "https://c.example/files/u1", 4096)
        state.save("B1", "https://c.example/files/u0", 0, part="signature")
    with open_ledger(db) as led:
        state = SqliteUploadState(led, url)
        assert state.load("B1") == ("https://c.example/files/u1", 4096)
        assert state.load("B1", "signature") == ("https://c.example/files/u0", 0)
        assert state.receipt("B1") is None
        state.mark_done("B1", receipt("B1", size=10), "data")
        state.save("B1", "https://c.example/files/other", 3)  # a late save cannot undo "done"
        assert state.load("B1") == ("https://c.example/files/u1", 10)
        assert state.receipt("B1") == receipt("B1", size=10)
        # another destination is another upload
        assert SqliteUploadState(led, "https://elsewhere.example/files/").load("B1") is None
        rows = list_uploads(led, "B1")
    assert all("pw" not in r["destination"] and "token" not in r["destination"] for r in rows)
    assert {(r["part"], r["state"]) for r in rows} == {("data", "done"), ("signature", "in_progress")}


def test_unknown_part_is_a_bug(ledger) -> None:
    with pytest.raises(ValueError):
        SqliteUploadState(ledger, "file:///x").load("B1", "thumbnail")


def test_settings_from_config(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc123\n")
    token.chmod(0o600)
    s = TransportSettings.from_config({"bearer_token_file": str(token), "bandwidth_limit_kbps": 8000,
                                       "timeout_seconds": 30, "retries": 3})
    assert s.bearer_token == "abc123" and s.bandwidth_limit == 1_000_000
    assert s.timeout == 30 and s.retries == 3
    assert "abc123" not in repr(s)
    assert TransportSettings.from_config({}) == TransportSettings()
    with pytest.raises(ConfigError, match="unknown"):
        TransportSettings.from_config({"verify": False})
    with pytest.raises(ConfigError, match="not a readable file"):
        TransportSettings.from_config({"ca_bundle": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError):
        TransportSettings.from_config({"retries": -1})


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("999999") == 3600
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412480 - 30) == pytest.approx(30)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert [backoff_delay(a, 1, 300, None, lambda: 1.0) for a in (1, 2, 3, 10)] == [1, 2, 4, 300]
    assert backoff_delay(3, 1, 300, None, lambda: 0.0) == 2  # jitter keeps at least half
    assert backoff_delay(1, 1, 300, 60, lambda: 0.5) == 60
