"""The monitoring settings of config.toml: ``[log]``, ``[monitoring]`` and ``[alerts]``.

Read from ``Config.raw`` (every section optional; the defaults need no edit), checked like the
rest of the config: a wrong value is a ConfigError naming the key, an alert secret file
readable by group or others is refused like a key file (exit 4), before the run starts rather
than when the alert is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..home.config import flag, whole_number
from ..home.logfile import LogSettings
from ..keys.files import check_secret_file

__all__ = ["LogSettings", "MonitoringSettings", "AlertSettings", "Settings", "from_config"]
OUTCOMES = ("ok", "partial", "undelivered", "failed")  # what a run ended as (``runs.outcome_of``)
ALERT_WHEN = (*OUTCOMES, "recovered")


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    return table


def _text(table: dict[str, Any], where: str, key: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"config: {where}.{key} must be a string")
    return value.strip()


def _texts(table: dict[str, Any], where: str, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"config: {where}.{key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class MonitoringSettings:
    """``[monitoring]``: what ``run`` leaves behind for monitoring systems, and the thresholds
    of ``status --check``."""

    metrics: bool = True  # HOME/metrics/sfr_gateway.prom after each run
    metrics_file: str = ""  # "" = HOME/metrics/sfr_gateway.prom
    status_page: str = ""  # "" = none; else an HTML file refreshed after each run
    warn_after_hours: int = 26  # no successful run for this long: WARNING (a nightly run, and slack)
    critical_after_hours: int = 72  # ... CRITICAL
    withdrawal_warn_hours: int = 24  # a withdrawal request not delivered for this long: WARNING
    withdrawal_critical_hours: int = 72  # ... CRITICAL: the central host must delete the data
    quarantine_is_warning: bool = False  # files the engine refused for good: WARNING, or only counted

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> MonitoringSettings:
        t = _table(raw, "monitoring")
        hours = 24 * 366
        made = cls(
            metrics=flag(t, "monitoring", "metrics", True),
            metrics_file=_text(t, "monitoring", "metrics_file"),
            status_page=_text(t, "monitoring", "status_page"),
            warn_after_hours=whole_number(t, "monitoring", "warn_after_hours", cls.warn_after_hours, 1, hours),
            critical_after_hours=whole_number(t, "monitoring", "critical_after_hours", cls.critical_after_hours, 1, hours),
            withdrawal_warn_hours=whole_number(t, "monitoring", "withdrawal_warn_hours", cls.withdrawal_warn_hours, 1, hours),
            withdrawal_critical_hours=whole_number(t, "monitoring", "withdrawal_critical_hours",
                                             cls.withdrawal_critical_hours, 1, hours),
            quarantine_is_warning=flag(t, "monitoring", "quarantine_is_warning", False),
        )
        if made.critical_after_hours < made.warn_after_hours:
            raise ConfigError("config: monitoring.critical_after_hours must not be below warn_after_hours")
        if made.withdrawal_critical_hours < made.withdrawal_warn_hours:
            raise ConfigError("config: monitoring.withdrawal_critical_hours must not be below withdrawal_warn_hours")
        return made

    def metrics_path(self, home: Path) -> Path:
        return Path(self.metrics_file).absolute() if self.metrics_file else Path(home) / "metrics" / "sfr_gateway.prom"

    def status_page_path(self, home: Path) -> Path | None:
        if not self.status_page:
            return None
        page = Path(self.status_page).expanduser()
        return page if page.is_absolute() else Path(home) / page


@dataclass(frozen=True)
class AlertSettings:
    """``[alerts]``: an e-mail and/or a webhook when a run ends badly (``when``)."""

    when: tuple[str, ...] = ("failed", "undelivered", "recovered")
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password_file: str = ""
    webhook_url: str = ""
    webhook_token_file: str = ""
    timeout_seconds: int = 10

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> AlertSettings:
        t = _table(raw, "alerts")
        when = _texts(t, "alerts", "when", cls.when)
        wrong = [w for w in when if w not in ALERT_WHEN]
        if wrong:
            raise ConfigError(f"config: alerts.when: {', '.join(wrong)} unknown; use {', '.join(ALERT_WHEN)}")
        made = cls(
            when=when, email_to=_texts(t, "alerts", "email_to"), email_from=_text(t, "alerts", "email_from"),
            smtp_host=_text(t, "alerts", "smtp_host", "localhost") or "localhost",
            smtp_port=whole_number(t, "alerts", "smtp_port", 25, 1, 65535),
            smtp_starttls=flag(t, "alerts", "smtp_starttls", False), smtp_user=_text(t, "alerts", "smtp_user"),
            smtp_password_file=_text(t, "alerts", "smtp_password_file"),
            webhook_url=_text(t, "alerts", "webhook_url"), webhook_token_file=_text(t, "alerts", "webhook_token_file"),
            timeout_seconds=whole_number(t, "alerts", "timeout_seconds", 10, 1, 300),
        )
        if made.webhook_url and not made.webhook_url.startswith(("https://", "http://")):
            raise ConfigError("config: alerts.webhook_url must be an https:// (or http://) URL")
        if made.smtp_user and not made.smtp_password_file:
            raise ConfigError("config: alerts.smtp_user needs alerts.smtp_password_file (a 0600 file, never the "
                              "password itself in config.toml)")
        if made.email_from and "@" not in made.email_from:
            raise ConfigError("config: alerts.email_from must be an e-mail address")
        return made

    @property
    def enabled(self) -> bool:
        return bool(self.email_to or self.webhook_url)

    def sender(self, site_id: str) -> str:
        import socket

        return self.email_from or f"sfr-gateway-{site_id or 'site'}@{socket.getfqdn()}"

    def check_secrets(self) -> None:
        """Refuse (exit 4) a password or token file readable by group or others, or unreadable."""

        if self.smtp_password_file:
            check_secret_file(self.smtp_password_file, "alerts.smtp_password_file")
        if self.webhook_token_file:
            check_secret_file(self.webhook_token_file, "alerts.webhook_token_file")


@dataclass(frozen=True)
class Settings:
    log: LogSettings
    monitoring: MonitoringSettings
    alerts: AlertSettings


def from_config(raw: dict[str, Any]) -> Settings:
    """The three sections, checked (ConfigError naming the key)."""
    return Settings(LogSettings.from_raw(raw), MonitoringSettings.from_raw(raw), AlertSettings.from_raw(raw))
