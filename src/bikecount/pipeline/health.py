"""Daily counter health: every counter's state on an ingested day, stored, its faults alerted.

The check is :func:`bikecount.health.check_health` on the store's raw counts of the day and the
weeks before it, against each counter's seasonal profile scaled by the city's own shift. The
stored day-ahead forecasts are not its expectation: they follow each counter's recent gap to the
model by design (:mod:`bikecount.forecast`, up to ×3 either way within days), so a counter that
drifts low would soon be forecast low and look healthy.

One row per counter and day goes to the ``counter_health`` table (a re-check replaces the day).
When ``alertmanager_url`` is set and the day is the latest stored one, the verdicts are posted
to Alertmanager (:mod:`bikecount.monitoring.counter_alerts`); a backfilled older day is stored
without alerting, since its faults may be long over.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bikecount.config import Settings
from bikecount.health import HealthInputError, HealthParams, HealthReport, check_health
from bikecount.monitoring.counter_alerts import (
    AlertDeliveryError,
    counter_alerts,
    firing_counters,
    post_alerts,
)
from bikecount.pipeline import PipelineError
from bikecount.pipeline.store import last_day, read_counts, replace_day_health
from bikecount.pipeline.store_engine import open_pipeline_store

logger = logging.getLogger(__name__)


@dataclass
class HealthResult:
    """One day's check: counters per status, the faults with their evidence, what was alerted."""

    day: str
    counters: int
    statuses: dict[str, int]
    city_factor: float | None
    faults: list[dict[str, Any]] = field(default_factory=list)
    alerts: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def history_start(day: date, params: HealthParams) -> date:
    """The first day the check of ``day`` reads: the profile's weeks before the days examined."""
    return day - timedelta(days=params.profile_weeks * 7 + params.lookback_days - 1)


def check_day(
    settings: Settings, day: date, params: HealthParams | None = None, now: datetime | None = None
) -> HealthResult:
    """Check every counter's health on ``day`` from the store, store it, and alert its faults.

    Args:
        settings: the store and, optionally, the Alertmanager to post to.
        day: a local day with stored counts.
        params: the check's thresholds (default :class:`HealthParams`).
        now: the time the alerts are stamped with (default: now).

    Raises:
        PipelineError: the day has no stored counts, or Alertmanager cannot take the alerts
            (the day's health is stored by then).
    """
    params = params or HealthParams()
    engine = open_pipeline_store(settings)
    records = read_counts(engine, history_start(day, params), day)
    try:
        report = check_health(records, day, params)
    except HealthInputError as exc:
        raise PipelineError(
            f"{day}: {exc}; run `bikecount pipeline ingest --date {day}` first"
        ) from exc
    written = replace_day_health(engine, day, report.counters)
    logger.info("health of %s: %d counters stored, %d faults", day, written, len(report.faults()))
    latest = last_day(engine)
    result = HealthResult(
        day=day.isoformat(),
        counters=len(report.counters),
        statuses=dict(Counter(health.status for health in report.counters)),
        city_factor=report.city_factor,
        faults=[health.to_dict() for health in report.faults()],
    )
    result.alerts = _alert(settings, report, latest, now or datetime.now(UTC))
    return result


def _alert(settings: Settings, report: HealthReport, latest: date | None, now: datetime) -> str:
    """Post the report's alerts when due; what happened, in words."""
    if not settings.alertmanager_url:  # unset, or left empty (compose passes it on as it is)
        return "not sent: BIKECOUNT_ALERTMANAGER_URL is not set"
    if latest is not None and report.day < latest:
        return f"not sent: {report.day} is older than the latest stored day ({latest})"
    try:
        alerts = counter_alerts(report, now, firing_counters(settings.alertmanager_url))
        post_alerts(settings.alertmanager_url, alerts)
    except AlertDeliveryError as exc:
        raise PipelineError(f"{report.day}: health stored, alerts not sent: {exc}") from exc
    firing = len(report.faults())
    logger.info("posted %d firing and %d resolved alerts", firing, len(alerts) - firing)
    return f"sent to {settings.alertmanager_url}: {firing} firing, {len(alerts) - firing} resolved"
