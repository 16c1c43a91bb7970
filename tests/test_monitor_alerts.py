"""Alerts on failure, configured in config.toml: an e-mail to a real SMTP server and a JSON POST
to a real HTTP server, both on 127.0.0.1; secrets only in 0600 files and never written anywhere;
an alert that cannot be sent never changes the run's exit code.

Before issue 17 there was no alert of any kind.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from monitor_fixtures import add_config, make_site, planted_tokens, set_destination, smtp_server, webhook_server  # noqa: F401

from sfr_gateway.errors import KeyFileError


def mail_of(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_an_undelivered_run_mails_and_the_next_good_one_says_recovered(tmp_path: Path, cli, smtp_server) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=61)
    add_config(site.home, f"""[alerts]
email_to = ["pacs-admin@chu.example", "it@chu.example"]
email_from = "gw@chu.example"
smtp_host = "127.0.0.1"
smtp_port = {smtp_server.port}
""")
    share = tmp_path / "share"
    set_destination(site.home, share.as_uri())
    proc = site.gateway("run")
    assert proc.returncode == 10
    (msg,) = smtp_server.messages
    assert msg["from"] == "gw@chu.example" and msg["to"] == ["pacs-admin@chu.example", "it@chu.example"]
    mail = mail_of(msg["data"])
    assert mail["Subject"] == "[sfr-gateway TEST01] run undelivered (exit 10)"
    body = mail.get_content()
    assert "exit code 10 (transport error" in body and "Error: not delivered (" in body
    assert "Status: SFR-GATEWAY WARNING - 1 batch not delivered" in body and "share does not exist" in body
    assert "Summary: scanned 2 files" in body and "Log file: " in body
    for token in planted_tokens(site):
        assert token not in body
    share.mkdir()
    assert site.gateway("run").returncode == 0
    recovered = mail_of(smtp_server.messages[-1]["data"])
    assert recovered["Subject"] == "[sfr-gateway TEST01] recovered: the run went through (ok)"
    assert site.gateway("run").returncode == 0
    assert len(smtp_server.messages) == 2  # all well after all well: nothing to say


def test_smtp_login_reads_a_0600_password_file_and_never_shows_it(tmp_path: Path, cli, smtp_server) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=63)
    password = tmp_path / "smtp-password"
    password.write_text("pa55-w0rd-Xq9\n")
    password.chmod(0o644)
    add_config(site.home, f"""[alerts]
email_to = ["pacs-admin@chu.example"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_server.port}
smtp_user = "gateway"
smtp_password_file = "{password}"
when = ["failed", "undelivered", "partial"]
""")
    refused = site.gateway("run")  # refused before anything is done
    assert refused.returncode == KeyFileError.exit_code == 4 and "chmod 600" in refused.stderr
    assert "pa55-w0rd" not in refused.stderr and not site.batches()
    password.chmod(0o600)
    proc = site.gateway("run", env={"SFR_GATEWAY_RAISE": "deidentify:/P0000/"})
    assert proc.returncode == 19
    assert smtp_server.auth == ["\0gateway\0pa55-w0rd-Xq9"]
    assert mail_of(smtp_server.messages[0]["data"])["Subject"] == "[sfr-gateway TEST01] run partial (exit 19)"
    log = (site.home / "logs" / "sfr-gateway.log").read_text()
    assert "alert sent by e-mail" in log
    for text in (proc.stdout, proc.stderr, log, (site.home / "state.db").read_bytes().decode("latin-1")):
        assert "pa55-w0rd" not in text


def test_a_webhook_gets_json_with_a_bearer_token_and_a_dead_one_changes_nothing(
        tmp_path: Path, cli, webhook_server) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=64)
    token = tmp_path / "hook-token"
    token.write_text("t0ken-ABC-123\n")
    token.chmod(0o600)
    secret_url = webhook_server.url("/hooks/SECRET-PATH-777")
    add_config(site.home, f"""[alerts]
webhook_url = "{secret_url}"
webhook_token_file = "{token}"
""")
    set_destination(site.home, (tmp_path / "gone").as_uri())
    assert site.gateway("run").returncode == 10
    (post,) = webhook_server.posts
    assert post["path"] == "/hooks/SECRET-PATH-777"
    assert post["headers"]["Authorization"] == "Bearer t0ken-ABC-123"
    body = post["json"]
    assert body["site"] == "TEST01" and body["outcome"] == "undelivered" and body["exit_code"] == 10
    assert body["kind"] == "undelivered" and body["text"].startswith("[sfr-gateway TEST01] run undelivered (exit 10)")
    assert body["status"].startswith("SFR-GATEWAY WARNING - ") and body["summary"].startswith("scanned 2 files")
    # the webhook answers 500, then is gone: the run's exit code is its own, a warning is logged
    webhook_server.status = 500
    assert site.gateway("run").returncode == 10
    config = site.home / "config.toml"
    config.write_text(config.read_text().replace(secret_url, "http://127.0.0.1:9/hooks/SECRET-PATH-777"))
    assert site.gateway("run").returncode == 10
    log = (site.home / "logs" / "sfr-gateway.log").read_text()
    assert "alert by webhook not sent: the webhook at 127.0.0.1 answered HTTP 500" in log
    assert "alert by webhook not sent: ConnectionError" in log
    assert "SECRET-PATH" not in log and "t0ken-ABC" not in log


def test_wrong_alert_settings_stop_the_run_before_it_starts(tmp_path: Path, cli) -> None:
    site = make_site(tmp_path, cli, patients=1, slices=2, seed=65)
    add_config(site.home, '[alerts]\nwhen = ["sometimes"]\nwebhook_url = "ftp://x"\n')
    proc = site.gateway("run")
    assert proc.returncode == 3 and "alerts.when: sometimes unknown" in proc.stderr and not site.batches()
