"""The daily health step on a SQLite store: one row per counter and day, a re-check replaces the
day, faults found with their start, alerts in Alertmanager's format and sent only when due.

Alertmanager itself receives them in tests/integration/test_counter_alerts.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers
from bikecount.cli import app
from bikecount.config import Settings
from bikecount.health import check_health
from bikecount.monitoring.counter_alerts import ALERT_HOURS, ALERT_NAME, counter_alerts
from bikecount.pipeline import PipelineError
from bikecount.pipeline.health import check_day
from bikecount.pipeline.store import read_counts, read_health
from bikecount.pipeline.store_engine import open_store

DAY = helpers.HEALTH_DAY
NOW = datetime(2021, 3, 25, 1, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return helpers.generate_canonical(helpers.HEALTH_CONFIG)


@pytest.fixture(scope="module")
def broken(frame: pd.DataFrame) -> str:
    return sorted(frame["counter"].unique())[0]


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame, broken: str
) -> Settings:
    """A store with the weeks before DAY and the day after; ``broken`` out from 8:00 on DAY."""
    root = tmp_path_factory.mktemp("health-store")
    settings = Settings(_env_file=None, pipeline_db_url=f"sqlite:///{root / 'pipeline.db'}")
    helpers.fill_health_store(settings, frame, broken)
    return settings


def test_a_day_is_stored_one_row_per_counter_and_a_recheck_replaces_it(
    settings: Settings, broken: str
) -> None:
    first = check_day(settings, DAY, now=NOW)
    again = check_day(settings, DAY, now=NOW)
    stored = read_health(open_store(settings.pipeline_db_url), DAY)
    assert first == again
    assert len(stored) == first.counters == 6 and stored["counter"].is_unique
    row = stored.set_index("counter").loc[broken]
    assert row["status"] == "outage" and row["observed"] < row["expected"]
    assert row["since"] == pd.Timestamp("2021-03-24 08:00", tz="Europe/Paris")
    assert row["hours"] == list(range(8, 24)) and "zeros" in row["reason"]
    assert [fault["counter"] for fault in first.faults] == [broken]
    assert first.statuses["outage"] == 1 and first.alerts.startswith("not sent")


def test_the_stored_day_says_what_the_check_on_the_same_counts_says(settings: Settings) -> None:
    engine = open_store(settings.pipeline_db_url)
    check_day(settings, DAY, now=NOW)
    report = check_health(read_counts(engine), DAY)
    stored = read_health(engine, DAY).set_index("counter")
    for health in report.counters:
        assert stored.loc[health.counter, "status"] == health.status
        assert stored.loc[health.counter, "reason"] == health.reason


def test_the_outage_is_over_the_day_after(settings: Settings, broken: str) -> None:
    result = check_day(settings, DAY + timedelta(days=1), now=NOW)
    assert broken not in [fault["counter"] for fault in result.faults]


def test_a_day_without_counts_is_refused_naming_the_step_to_run(settings: Settings) -> None:
    with pytest.raises(PipelineError, match="no .* on 2021-04-30.*pipeline ingest --date"):
        check_day(settings, DAY + timedelta(days=37))


def test_an_older_day_than_the_latest_is_stored_without_alerting(settings: Settings) -> None:
    # An address nothing listens on: posting would fail the step.
    due = settings.model_copy(update={"alertmanager_url": helpers.closed_port_url()})
    result = check_day(due, DAY, now=NOW)
    assert result.alerts == "not sent: 2021-03-24 is older than the latest stored day (2021-03-25)"
    with pytest.raises(PipelineError, match="health stored, alerts not sent: Alertmanager at"):
        check_day(due, DAY + timedelta(days=1), now=NOW)


def test_alerts_are_alertmanagers_postable_alerts(settings: Settings, broken: str) -> None:
    """The shape of ``postableAlerts`` in Alertmanager's API v2 (api/v2/openapi.yaml of
    prometheus/alertmanager): ``labels`` required; ``annotations``, ``startsAt``, ``endsAt``
    optional, times as RFC 3339 date-times; an alert whose end is past is resolved."""
    report = check_health(read_counts(open_store(settings.pipeline_db_url)), DAY)
    healed = next(h.counter for h in report.counters if h.status == "ok")
    (firing,) = counter_alerts(report, NOW)  # nothing to resolve: nothing was firing
    assert firing["labels"] == {"alertname": ALERT_NAME, "severity": "warning", "counter": broken}
    assert firing["startsAt"] == "2021-03-24T07:00:00Z"  # 8:00 in Paris, in UTC
    ends = NOW + timedelta(hours=ALERT_HOURS)
    assert firing["endsAt"] == ends.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert firing["annotations"]["status"] == "outage"
    assert (
        broken in firing["annotations"]["summary"] and "check" in firing["annotations"]["summary"]
    )
    alerts = counter_alerts(report, NOW, firing={healed, broken, "a counter since removed"})
    resolved = [alert for alert in alerts if alert["labels"]["counter"] != broken]
    assert resolved == [
        {
            "labels": {"alertname": ALERT_NAME, "severity": "warning", "counter": healed},
            "endsAt": "2021-03-25T01:30:00Z",
        }
    ]
    json.dumps(alerts)  # what is posted is plain JSON


def test_the_command_prints_the_faults_and_json(settings: Settings) -> None:
    env = {"BIKECOUNT_PIPELINE_DB_URL": settings.pipeline_db_url}
    runner = CliRunner()
    shown = runner.invoke(app, ["pipeline", "health", "--date", str(DAY)], env=env)
    assert shown.exit_code == 0, shown.output
    assert "6 counters checked (5 ok, 1 outage)" in shown.output
    assert "counters with a fault" in shown.output and "zeros or no data" in shown.output
    as_json = runner.invoke(app, ["pipeline", "health", "--date", str(DAY), "--json"], env=env)
    answer = json.loads(as_json.stdout)
    assert answer["day"] == str(DAY) and answer["faults"][0]["status"] == "outage"


def test_the_command_says_in_one_line_when_the_day_has_no_counts(tmp_path: Path) -> None:
    env = {"BIKECOUNT_PIPELINE_DB_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    done = CliRunner().invoke(app, ["pipeline", "health", "--date", str(DAY)], env=env)
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "pipeline ingest --date 2021-03-24" in done.output
