"""Where Prometheus' alerts go: the Alertmanager configuration, made from the settings.

Prometheus evaluates the rules of ``deploy/prometheus/alerts.yml`` and sends what fires to
Alertmanager, which groups the alerts and delivers them to one receiver, ``bikecount``, with a
configuration for each URL the settings give: a generic webhook (Alertmanager's JSON), a Slack
incoming webhook, a Discord webhook (or any service that speaks one of those formats). With
none set, alerts are listed in Alertmanager's UI and reach nobody; :func:`receiver_kinds` lets
callers say so.

``bikecount alerts config`` writes this file; ``bikecount up --monitoring`` and the compose
profile ``monitoring`` run Alertmanager with it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import SecretStr

from bikecount.config import Settings

RECEIVER = "bikecount"
# Alerts of one rule and one API arrive together; a person reads one message per problem.
GROUP_BY = ["alertname", "job"]

# The message of chat receivers: what fired, how bad, what to do (the rules' summary says it).
TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
    "{{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})"
)
TEXT = (
    "{{ range .Alerts }}{{ .Labels.alertname }} [{{ .Labels.severity }}]"
    "{{ if .Labels.job }} on {{ .Labels.job }}{{ end }}: {{ .Annotations.summary }}\n"
    "{{ end }}"
)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def receiver_kinds(settings: Settings) -> list[str]:
    """The kinds of receiver the settings configure (``webhook``, ``slack``, ``discord``)."""
    urls = {
        "webhook": _secret(settings.alert_webhook_url),
        "slack": _secret(settings.alert_slack_webhook_url),
        "discord": _secret(settings.alert_discord_webhook_url),
    }
    return [kind for kind, url in urls.items() if url]


def alertmanager_config(settings: Settings) -> dict[str, object]:
    """Alertmanager's configuration: one route to the ``bikecount`` receiver.

    Resolved alerts are sent too, so that a channel also hears that a problem is over.
    """
    receiver: dict[str, object] = {"name": RECEIVER}
    webhook = _secret(settings.alert_webhook_url)
    slack = _secret(settings.alert_slack_webhook_url)
    discord = _secret(settings.alert_discord_webhook_url)
    if webhook:
        receiver["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
    if slack:
        receiver["slack_configs"] = [
            {"api_url": slack, "send_resolved": True, "title": TITLE, "text": TEXT}
        ]
    if discord:
        receiver["discord_configs"] = [
            {"webhook_url": discord, "send_resolved": True, "title": TITLE, "message": TEXT}
        ]
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": GROUP_BY,
            "group_wait": f"{settings.alert_group_wait_seconds}s",
            "group_interval": f"{settings.alert_group_interval_seconds}s",
            "repeat_interval": f"{settings.alert_repeat_interval_minutes}m",
        },
        "receivers": [receiver],
    }


def write_alertmanager_config(settings: Settings, path: Path, *, private: bool = True) -> Path:
    """Write :func:`alertmanager_config` to ``path`` (its folder is created); return ``path``.

    The file holds the receivers' URLs, which are secrets: readable by its owner only, unless
    ``private`` is false (an Alertmanager container that runs as another user reads it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(alertmanager_config(settings), sort_keys=False))
    path.chmod(0o600 if private else 0o644)
    return path
