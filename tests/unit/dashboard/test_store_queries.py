"""The dashboard's data functions on a real SQLite pipeline store filled by the pipeline's own
functions: bounded queries, the counter page's day table, records for "ask the model", states."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine

from bikecount.config import Settings
from bikecount.dashboard import api_client, charts, registry_view, states, store_queries
from bikecount.dashboard.config import DashboardConfig
from bikecount.health import CounterHealth
from bikecount.pipeline.store import (
    read_counts,
    replace_day_counts,
    replace_day_health,
    write_audit,
)
from bikecount.pipeline.store_engine import open_store
from bikecount.pipeline.store_schema import counter_health, metadata
from bikecount.registry import Registry

DAYS = [date(2021, 6, 7), date(2021, 6, 8), date(2021, 6, 9)]
COMING = date(2021, 6, 10)
SEBASTOPOL = "Totem 73 boulevard de Sébastopol S-N"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Engine]:
    import helpers

    folder = tmp_path_factory.mktemp("dashboard-store")
    settings = Settings(_env_file=None, pipeline_db_url=f"sqlite:///{folder / 'pipeline.db'}")
    helpers.fill_dashboard_store(settings, DAYS, COMING)
    return settings, open_store(settings.pipeline_db_url)


def test_an_untouched_store_is_empty_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    summary = store_queries.read_summary(create_engine(f"sqlite:///{path}"))
    assert summary.empty and summary.coming_day is None and summary.counters == 0


def test_summary_names_the_last_counted_day_and_the_coming_one(store: tuple) -> None:
    _, engine = store
    summary = store_queries.read_summary(engine)
    assert summary.last_count_day == DAYS[-1]
    assert summary.coming_day == COMING
    assert summary.last_forecast_day == COMING
    assert summary.counters == 52


def test_map_has_every_counter_with_its_forecast_and_last_day_error(store: tuple) -> None:
    settings, engine = store
    frame = store_queries.read_map_frame(
        engine, store_queries.read_summary(engine), settings.pipeline_model_type
    )
    assert len(frame) == 52 and frame["counter"].is_unique
    assert frame["lat"].between(48.8, 48.91).all() and frame["lon"].between(2.25, 2.42).all()
    # v2 is the newest: 13 bikes an hour on the coming day (no counts: 10 + 3), 3 off the counts.
    assert frame["forecast_total"].tolist() == pytest.approx([13.0 * 24] * 52)
    assert frame["mae"].tolist() == pytest.approx([3.0] * 52)
    truth = read_counts(engine, DAYS[-1], DAYS[-1]).groupby("counter")["count"].sum()
    assert frame.set_index("counter")["counted_total"].to_dict() == pytest.approx(truth.to_dict())


def test_map_without_forecasts_keeps_every_point(store: tuple) -> None:
    _, engine = store
    frame = store_queries.read_map_frame(engine, store_queries.read_summary(engine), "rf")
    assert len(frame) == 52 and frame["forecast_total"].isna().all()
    spec = charts.map_chart(frame, "forecast_total").to_dict()
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg"


def test_counter_day_table_matches_the_store(store: tuple) -> None:
    settings, engine = store
    counts = store_queries.read_counter_counts(engine, SEBASTOPOL, DAYS[0], DAYS[-1])
    forecasts = store_queries.read_counter_forecasts(
        engine, SEBASTOPOL, DAYS[0], DAYS[-1], settings.pipeline_model_type
    )
    assert len(counts) == 24 * len(DAYS) and set(forecasts["model_version"]) == {1, 2}
    days = store_queries.summarise_counter_days(counts, forecasts)
    assert len(days) == 2 * len(DAYS)
    stored = read_counts(engine, DAYS[0], DAYS[-1])
    stored = stored[stored["counter"] == SEBASTOPOL].groupby("day")["count"].sum()
    for row in days.itertuples():
        assert row.counted == pytest.approx(stored[row.day])
        if row.model_version == 2:
            assert row.forecast == pytest.approx(stored[row.day] + 3 * 24)
            assert row.mae == pytest.approx(3.0)


def test_counter_queries_are_bounded_by_counter_and_days(store: tuple) -> None:
    settings, engine = store
    counts = store_queries.read_counter_counts(engine, SEBASTOPOL, DAYS[1], DAYS[1])
    assert set(counts["day"]) == {DAYS[1]} and len(counts) == 24
    assert store_queries.read_counter_counts(engine, "nobody", DAYS[0], COMING).empty


def test_a_day_with_counts_and_no_forecast_keeps_its_row() -> None:
    counts = pd.DataFrame(
        {
            "day": [DAYS[0]] * 2,
            "timestamp": pd.to_datetime(["2021-06-07 08:00"] * 2),
            "count": [4.0, 6.0],
        }
    )
    empty = pd.DataFrame(columns=["day", "timestamp", "prediction", "model_version"])
    days = store_queries.summarise_counter_days(counts, empty)
    assert days["counted"].tolist() == [10.0] and days["forecast"].isna().all()


def test_daily_errors_per_version(store: tuple) -> None:
    settings, engine = store
    errors = store_queries.read_daily_errors(engine, DAYS[0], COMING, settings.pipeline_model_type)
    assert set(errors["day"]) == set(DAYS)  # the coming day has no counts: not scored
    assert errors[errors["model_version"] == 2]["mae"].tolist() == pytest.approx([3.0] * 3)


def test_audit_is_newest_first_and_limited(store: tuple) -> None:
    _, engine = store
    for reason in ("first", "second", "third"):
        write_audit(
            engine,
            {"model_type": "gbm", "forced": False, "retrained": False, "promoted": False,
             "reason": reason, "drift_share": 0.25},
        )  # fmt: skip
    frame = store_queries.read_audit(engine, limit=2)
    assert frame["reason"].tolist() == ["third", "second"]
    assert frame["run_at"].dt.tz is not None


def test_records_for_ask_the_model_follow_the_api_spelling() -> None:
    counters = pd.DataFrame(
        {"counter": [SEBASTOPOL, "Pont de Bercy NE-SO"], "lat": [48.86377, 48.83848],
         "lon": [2.35096, 2.37587]}
    )  # fmt: skip
    records = api_client.build_records(counters, date(2021, 6, 1), [18, 8])
    assert [r["date_et_heure_de_comptage"] for r in records[:2]] == [
        "2021-06-01T08:00:00+02:00",
        "2021-06-01T18:00:00+02:00",
    ]
    assert records[0] == {
        "nom_du_compteur": SEBASTOPOL,
        "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00",
        "coordonnées_géographiques": "48.863770,2.350960",
    }
    # The spring DST night has no 2 am.
    assert api_client.build_records(counters.head(1), date(2021, 3, 28), [2, 3]) == [
        {
            "nom_du_compteur": SEBASTOPOL,
            "date_et_heure_de_comptage": "2021-03-28T03:00:00+02:00",
            "coordonnées_géographiques": "48.863770,2.350960",
        }
    ]


def test_unreachable_services_are_errors_not_empties(tmp_path: Path) -> None:
    import helpers

    (free_port,) = helpers.free_ports(1)
    with pytest.raises(api_client.ApiError, match="does not answer"):
        api_client.check_api(f"http://127.0.0.1:{free_port}")
    down = Settings(_env_file=None, mlflow_tracking_uri=f"http://127.0.0.1:{free_port}")
    with pytest.raises(registry_view.RegistryUnavailableError, match="cannot be reached"):
        registry_view.check_mlflow(Registry(down))
    local = Settings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'local.db'}")
    registry_view.check_mlflow(Registry(local))  # a local store needs no server


def test_states_say_what_to_run() -> None:
    assert "`bikecount up`" in states.api_down("http://x", "refused")
    assert "`bikecount up`" in states.mlflow_down("http://x", "refused")
    assert "--source synthetic" in states.store_empty("sqlite:///p.db")
    assert "`bikecount pipeline predict --date 2021-06-10`" in states.no_forecast(COMING)
    assert "`bikecount train --model nn`" in states.no_champion("nn")
    assert "monitor-retrain" in states.no_audit()


def test_mlflow_links() -> None:
    assert (
        registry_view.run_link("http://m:5000/", "3", "abc")
        == "http://m:5000/#/experiments/3/runs/abc"
    )
    assert registry_view.version_link("http://m:5000", "bikecount-gbm", 4) == (
        "http://m:5000/#/models/bikecount-gbm/versions/4"
    )


def test_pages_show_the_tracking_server_without_its_credentials() -> None:
    settings = Settings(_env_file=None, mlflow_tracking_uri="https://me:secret@mlflow.city:5000/")
    config = DashboardConfig.from_settings(settings)
    assert config.shown_tracking_uri == config.mlflow_ui_url == "https://mlflow.city:5000"
    local = DashboardConfig.from_settings(
        Settings(_env_file=None, mlflow_tracking_uri="sqlite:///m.db")
    )
    assert local.mlflow_ui_url is None and local.shown_tracking_uri == "sqlite:///m.db"


def health(counter: str, status: str, since: pd.Timestamp | None = None) -> CounterHealth:
    return CounterHealth(counter, status, since, 100.0, 0.0, 50.0, 200.0, (), f"{status} here")


def test_map_shows_each_counters_latest_checked_health(store: tuple) -> None:
    settings, engine = store
    counters = sorted(read_counts(engine, DAYS[-1], DAYS[-1])["counter"].unique())
    others = [c for c in counters if c != SEBASTOPOL]
    since = pd.Timestamp("2021-06-08 09:00", tz="Europe/Paris")
    # An older day says every counter is ok; the latest, the one the map shows, checked all
    # but the last counter: Sébastopol out since the day before, one low.
    replace_day_health(engine, DAYS[0], [health(c, "ok") for c in counters])
    latest = [health(SEBASTOPOL, "outage", since), health(others[0], "low")]
    latest += [health(c, "ok") for c in others[1:-1]]
    replace_day_health(engine, DAYS[-1], latest)
    frame = store_queries.read_map_frame(
        engine, store_queries.read_summary(engine), settings.pipeline_model_type
    ).set_index("counter")
    assert frame.loc[SEBASTOPOL, "health"] == "outage"
    assert frame.loc[SEBASTOPOL, "health_since"] == since
    assert frame.loc[SEBASTOPOL, "health_reason"] == "outage here"
    assert frame.loc[others[0], "health"] == "low" and frame.loc[others[-1], "health"] == "unknown"
    assert (frame.loc[others[1:-1], "health"] == "ok").all()
    assert set(frame["health_day"].dropna()) == {DAYS[-1]}


def test_a_store_from_before_the_health_check_shows_every_counter_unknown(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    older = [table for table in metadata.sorted_tables if table is not counter_health]
    metadata.create_all(engine, tables=older)  # the tables of a store of an older bikecount
    day = date(2021, 3, 10)
    replace_day_counts(engine, day, helpers_frame(day))
    frame = store_queries.read_map_frame(engine, store_queries.read_summary(engine), "gbm")
    assert len(frame) == 6 and set(frame["health"]) == {"unknown"}


def helpers_frame(day: date) -> pd.DataFrame:
    import helpers

    frame = helpers.generate_canonical()
    return frame[frame["timestamp"].dt.date == day]
