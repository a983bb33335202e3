"""Counter faults as Alertmanager alerts, posted by the daily health check.

The other alerts are Prometheus rules over the APIs' metrics (``deploy/prometheus/alerts.yml``).
A counter's health is the verdict of a daily batch step (``bikecount pipeline health``, an
Airflow task), not a gauge of a running service: no process stays up to be scraped with it. So
the step posts its verdicts to Alertmanager's API v2 (``POST /api/v2/alerts``, the endpoint
Prometheus itself posts to), and Alertmanager groups, routes and delivers them to the same
``bikecount`` receiver as the rules' alerts (:mod:`bikecount.monitoring.alerting`).

One alert per counter (labels ``alertname``, ``severity``, ``counter``): firing while the
counter has a fault, its start the fault's first hour and its end :data:`ALERT_HOURS` ahead, so
that each daily check renews it and a check that stops running lets it lapse; resolved (ends
now) when Alertmanager still holds it active and the counter is found without a fault, so a
channel hears that a counter works again. Only those: a resolved alert posted for a counter that
never fired would be listed, as resolved, in the next message about the others.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bikecount.health import FAULTS, CounterHealth, HealthReport

ALERT_NAME = "BikecountCounterFault"
SEVERITY = "warning"
ALERTS_PATH = "/api/v2/alerts"
# A day and a half: the next daily check renews a fault well before it lapses, and a pipeline
# that stopped checking does not leave a fault firing for ever.
ALERT_HOURS = 36
TIMEOUT_SECONDS = 10.0


class AlertDeliveryError(RuntimeError):
    """Alertmanager could not be reached or refused the alerts."""


def counter_alerts(
    report: HealthReport, now: datetime, firing: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Alertmanager's postable alerts of ``report``: one firing per counter with a fault, one
    resolved per counter of ``firing`` (those Alertmanager holds active) found without one.

    Args:
        report: the day's health check.
        now: the current time, timezone-aware (the alerts' times are RFC 3339 in UTC).
        firing: the counters whose alert Alertmanager holds active (:func:`firing_counters`).
    """
    return [
        _alert(health, report, now)
        for health in report.counters
        if health.status in FAULTS or health.counter in firing
    ]


def _alert(health: CounterHealth, report: HealthReport, now: datetime) -> dict[str, Any]:
    labels = {"alertname": ALERT_NAME, "severity": SEVERITY, "counter": health.counter}
    if health.status not in FAULTS:
        return {"labels": labels, "endsAt": _rfc3339(now)}
    starts = health.since.to_pydatetime() if health.since is not None else now
    return {
        "labels": labels,
        "annotations": {
            "summary": _summary(health),
            "status": health.status,
            "day": report.day.isoformat(),
            "expected": _bikes(health.expected),
            "observed": _bikes(health.observed),
        },
        "startsAt": _rfc3339(starts),
        "endsAt": _rfc3339(now + timedelta(hours=ALERT_HOURS)),
    }


def _summary(health: CounterHealth) -> str:
    """What is wrong and what to do, for the message a person reads."""
    return (
        f"counter {health.counter} ({health.status}): {health.reason}. Look at its hours "
        "(dashboard, Counter page; `bikecount health`), then check the counter or its data feed"
    )


def _bikes(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f}"


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("alert times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def firing_counters(url: str) -> set[str]:
    """The counters whose alert the Alertmanager at ``url`` holds active (silenced ones too).

    Raises:
        AlertDeliveryError: Alertmanager is unreachable or answers an error status.
    """
    query = {"filter": f'alertname="{ALERT_NAME}"', "active": "true", "silenced": "true"}
    response = _request("GET", url, params=query)
    return {alert["labels"]["counter"] for alert in response.json() if "counter" in alert["labels"]}


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """POST ``alerts`` to the Alertmanager at ``url`` (its base URL, e.g. http://host:9093).

    Raises:
        AlertDeliveryError: Alertmanager is unreachable or answers an error status.
    """
    if alerts:
        _request("POST", url, json=alerts)


def _request(method: str, url: str, **arguments: Any) -> httpx.Response:
    endpoint = url.rstrip("/") + ALERTS_PATH
    try:
        response = httpx.request(method, endpoint, timeout=TIMEOUT_SECONDS, **arguments)
    except httpx.HTTPError as exc:
        raise AlertDeliveryError(f"Alertmanager at {url} is unreachable ({exc})") from exc
    if response.status_code >= 400:
        raise AlertDeliveryError(
            f"Alertmanager at {url} answered {method} {ALERTS_PATH} with "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response
