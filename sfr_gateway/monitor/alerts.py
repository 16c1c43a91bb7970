"""Alerts when a run ends badly: an e-mail (SMTP) and/or a webhook (HTTP POST of JSON), as
``[alerts]`` of config.toml says.

An alert names the site, the host, the outcome and exit code, the error (the gateway's own
message: paths and codes, never a patient value), the run's summary line and the verdict of
``status --check``. Secrets (the SMTP password, the webhook token, the webhook URL itself, which
often carries a token) are never written to the log or the alert. Sending never makes the run
fail: a mail server or webhook that is down costs a warning in the log file.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from ..errors import EXIT_CODES, GatewayError
from ..keys.files import read_secret_file
from .settings import AlertSettings

log = logging.getLogger(__name__)


def due(settings: AlertSettings, outcome: str, previous: str | None) -> str | None:
    """The alert this run calls for (its outcome, or ``recovered``), or None."""
    if not settings.enabled:
        return None
    if outcome in ("ok", "partial") and previous in ("failed", "undelivered") and "recovered" in settings.when:
        return "recovered"
    return outcome if outcome in settings.when else None


def message(kind: str, site_id: str, run: dict[str, Any], health_line: str, logfile: str | None) -> dict[str, Any]:
    """What the alert says, as fields (the webhook's JSON) and as a subject and text (the mail)."""
    host = socket.gethostname()
    code = int(run.get("exit_code", 1))
    if kind == "recovered":
        subject = f"[sfr-gateway {site_id}] recovered: the run went through ({run.get('outcome')})"
    else:
        subject = f"[sfr-gateway {site_id}] run {kind} (exit {code})"
    lines = [
        f"Site {site_id}, host {host}.",
        f"Run ended {run.get('ended_at')} UTC: {run.get('outcome')}, exit code {code} "
        f"({EXIT_CODES.get(code, 'see the README, Exit codes')}).",
    ]
    if run.get("error"):
        lines.append(f"Error: {run['error']}")
    if run.get("summary"):
        lines.append(f"Summary: {run['summary']}")
    lines.append(f"Status: {health_line}")
    if logfile:
        lines.append(f"Log file: {logfile}")
    lines.append("On the gateway: `sfr-gateway status` (what is pending, failed or held back and why).")
    text = "\n".join(lines)
    return {"subject": subject, "text": f"{subject}\n{text}", "body": text, "site": site_id, "host": host,
            "kind": kind, "outcome": run.get("outcome"), "exit_code": code, "ended_at": run.get("ended_at"),
            "error": run.get("error"), "summary": run.get("summary"), "status": health_line}


def send(settings: AlertSettings, site_id: str, fields: dict[str, Any]) -> dict[str, str]:
    """Send by every configured channel; returns {channel: "sent" or the failure's kind}."""
    result: dict[str, str] = {}
    if settings.email_to:
        result["email"] = _guard("e-mail", lambda: _email(settings, site_id, fields))
    if settings.webhook_url:
        result["webhook"] = _guard("webhook", lambda: _webhook(settings, fields))
    return result


def _guard(channel: str, action: Any) -> str:
    try:
        action()
    except GatewayError as exc:  # a secret file refused, or our own check: the message is ours
        log.warning("alert by %s not sent: %s", channel, exc)
        return f"failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - an alert never fails the run; the type says enough
        log.warning("alert by %s not sent: %s", channel, type(exc).__name__)
        return f"failed: {type(exc).__name__}"
    log.info("alert sent by %s", channel)
    return "sent"


def _email(settings: AlertSettings, site_id: str, fields: dict[str, Any]) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid


    msg = EmailMessage()
    msg["Subject"] = fields["subject"]
    msg["From"] = settings.sender(site_id)
    msg["To"] = ", ".join(settings.email_to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=socket.getfqdn())
    msg["X-SFR-Gateway-Outcome"] = str(fields["outcome"])
    msg.set_content(fields["body"] + "\n")
    context = ssl.create_default_context()
    smtp_class = smtplib.SMTP_SSL if settings.smtp_port == 465 else smtplib.SMTP
    kwargs: dict[str, Any] = {"context": context} if smtp_class is smtplib.SMTP_SSL else {}
    with smtp_class(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds, **kwargs) as smtp:
        if settings.smtp_starttls and smtp_class is smtplib.SMTP:
            smtp.starttls(context=context)
        if settings.smtp_user:
            password = read_secret_file(settings.smtp_password_file, "alerts.smtp_password_file")
            smtp.login(settings.smtp_user, password.decode("utf-8").strip())
        smtp.send_message(msg)


def _webhook(settings: AlertSettings, fields: dict[str, Any]) -> None:
    import requests


    headers = {"Content-Type": "application/json", "User-Agent": "sfr-gateway-alert"}
    if settings.webhook_token_file:
        token = read_secret_file(settings.webhook_token_file, "alerts.webhook_token_file").decode("utf-8").strip()
        headers["Authorization"] = f"Bearer {token}"
    payload = {k: v for k, v in fields.items() if k not in ("body",)}
    answer = requests.post(settings.webhook_url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                           headers=headers, timeout=settings.timeout_seconds, allow_redirects=False)
    if not 200 <= answer.status_code < 300:
        raise GatewayError(f"the webhook at {urlsplit(settings.webhook_url).hostname} answered HTTP {answer.status_code}")
