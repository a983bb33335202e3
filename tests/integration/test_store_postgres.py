"""The pipeline store on a real PostgreSQL server (what production runs), not only SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from postgres_server import running_postgres
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError

from bikecount.config import Settings
from bikecount.data.io import write_records
from bikecount.health import CounterHealth
from bikecount.pipeline.ingest import ingest
from bikecount.pipeline.predict import day_grid, score_day
from bikecount.pipeline.store import (
    audit,
    daily_errors,
    ingested_days,
    known_counters,
    last_day,
    raw_counts,
    read_counts,
    read_health,
    read_table,
    replace_day_health,
    replace_predictions,
    write_audit,
)
from bikecount.pipeline.store_engine import open_store

pytestmark = pytest.mark.integration

DAY, DST_DAY = date(2021, 3, 10), date(2021, 3, 28)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = open_store(url)
    yield engine
    with engine.begin() as conn:  # each test starts from empty tables
        for table in reversed(raw_counts.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def settings(url: str, tmp_path: Path, small_raw: pd.DataFrame) -> Settings:
    write_records(small_raw, tmp_path / "drop" / "export.csv")
    return Settings(_env_file=None, pipeline_db_url=url)


def test_ingesting_a_day_twice_keeps_one_copy(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    for _ in range(2):
        result = ingest(settings, DAY, tmp_path / "drop")
    stored = read_counts(engine)
    assert result.rows_written == len(stored) == 6 * 24
    assert not stored.duplicated(["counter", "timestamp"]).any()
    assert set(stored["timestamp"].dt.date) == {DAY} and last_day(engine) == DAY
    assert ingested_days(engine, DAY, DAY) == {DAY} and len(known_counters(engine)) == 6


def test_a_daylight_saving_day_keeps_its_23_local_hours(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    ingest(settings, DST_DAY, tmp_path / "drop")
    stored = read_counts(engine)
    assert len(stored) == 6 * 23
    assert str(stored["timestamp"].dt.tz) == "Europe/Paris"
    assert stored["timestamp"].dt.hour.nunique() == 23


def test_the_database_refuses_a_second_count_for_one_counter_and_hour(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    ingest(settings, DAY, tmp_path / "drop")
    row = read_counts(engine).iloc[0]
    duplicate = {
        "day": DAY,
        "counter": row["counter"],
        "timestamp": row["timestamp"].tz_convert("UTC").tz_localize(None).to_pydatetime(),
        "lat": 0.0,
        "lon": 0.0,
        "count": 1.0,
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(raw_counts), duplicate)


def test_predictions_are_scored_per_version(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    ingest(settings, DAY, tmp_path / "drop")
    grid = day_grid(known_counters(engine), DAY)
    truth = grid.merge(read_counts(engine), on=["counter", "timestamp"])["count"].to_numpy()
    for version, offset in ((3, 0.0), (4, 10.0)):
        scored = grid.assign(prediction=truth + offset, model_version=version)
        replace_predictions(engine, DAY, scored, "gbm")
    result = score_day(settings, DAY, "gbm")
    assert result.errors[3]["rmse"] == 0.0 and result.errors[4]["mae"] == pytest.approx(10.0)
    assert len(read_table(engine, daily_errors)) == 2


def test_audit_rows_keep_their_json(engine: Engine) -> None:
    metrics = {"r2": 0.41, "rmse": 30.5, "mae": None}
    audit_id = write_audit(
        engine,
        {"model_type": "gbm", "forced": False, "drift_detected": True, "counts_drifted": True,
         "drift_share": 0.44, "champion_version": 2, "champion_metrics": metrics,
         "retrained": True, "new_version": 3, "promoted": True, "reason": "drift detected"},
    )  # fmt: skip
    row = read_table(engine, audit).iloc[0]
    assert row["id"] == audit_id and row["champion_metrics"] == metrics
    assert row["promoted"] and row["reason"] == "drift detected"


def test_a_day_of_counter_health_is_replaced_whole(engine: Engine) -> None:
    since = pd.Timestamp("2021-03-10 08:00", tz="Europe/Paris")
    out = CounterHealth("a", "outage", since, 900.0, 40.0, None, None, (8, 9, 10), "zeros")
    ok = CounterHealth("b", "ok", None, 900.0, 950.0, 450.0, 1800.0, (), "")
    replace_day_health(engine, DAY, [out, ok])
    replace_day_health(engine, DAY, [out])  # a re-check of the day: only its rows remain
    stored = read_health(engine, DAY)
    assert stored["counter"].tolist() == ["a"] and stored["hours"].tolist() == [[8, 9, 10]]
    assert stored["since"].tolist() == [since] and stored["lower"].isna().all()
