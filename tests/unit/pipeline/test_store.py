"""The pipeline store on a temporary SQLite file: day replacement, constraints, ingest, audit."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.exc import IntegrityError

from bikecount.config import Settings
from bikecount.data.io import DataFileError, write_records
from bikecount.forecast import day_grid, day_hours
from bikecount.pipeline.ingest import DUPLICATE_REASON, ingest
from bikecount.pipeline.predict import recent_calibration
from bikecount.pipeline.store import (
    audit,
    ingest_log,
    known_counters,
    last_day,
    raw_counts,
    read_counts,
    read_predictions,
    read_table,
    replace_day_counts,
    replace_predictions,
    write_audit,
)
from bikecount.pipeline.store_engine import open_store
from bikecount.records import COUNT, TIMESTAMP

DAY = date(2021, 3, 10)
DST_DAY = date(2021, 3, 28)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_store(f"sqlite:///{tmp_path / 'pipeline.db'}")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, pipeline_db_url=f"sqlite:///{tmp_path / 'pipeline.db'}")


def day_of(frame: pd.DataFrame, day: date) -> pd.DataFrame:
    return frame[frame["timestamp"].dt.date == day]


def test_replacing_a_day_twice_keeps_one_copy(engine: Engine, small_frame: pd.DataFrame) -> None:
    records = day_of(small_frame, DAY)
    assert replace_day_counts(engine, DAY, records) == len(records) == 6 * 24
    replace_day_counts(engine, DAY, records)
    stored = read_counts(engine)
    assert len(stored) == len(records)
    assert not stored.duplicated(["counter", "timestamp"]).any()
    assert set(stored["timestamp"].dt.date) == {DAY}
    assert stored["count"].sum() == records["count"].sum()


def test_replacing_a_day_leaves_other_days(engine: Engine, small_frame: pd.DataFrame) -> None:
    replace_day_counts(engine, DAY, day_of(small_frame, DAY))
    replace_day_counts(engine, DST_DAY, day_of(small_frame, DST_DAY))
    replace_day_counts(engine, DAY, day_of(small_frame, DAY).iloc[:10])
    assert len(read_counts(engine, DAY, DAY)) == 10
    # The spring DST night: 23 local hours, stored in UTC and read back in Paris time.
    assert len(read_counts(engine, DST_DAY, DST_DAY)) == 6 * 23


def test_a_duplicate_row_rolls_back_the_whole_day(
    engine: Engine, small_frame: pd.DataFrame
) -> None:
    records = day_of(small_frame, DAY)
    replace_day_counts(engine, DAY, records)
    doubled = pd.concat([records.iloc[:5], records.iloc[:1]])
    with pytest.raises(IntegrityError):
        replace_day_counts(engine, DAY, doubled)
    assert len(read_counts(engine, DAY, DAY)) == len(records)  # the delete was rolled back


def test_counter_and_timestamp_are_unique(engine: Engine) -> None:
    hour = pd.Timestamp("2021-03-10 07:00").to_pydatetime()
    row = {"day": DAY, "counter": "c", "timestamp": hour, "lat": 48.85, "lon": 2.35, "count": 3.0}
    with engine.begin() as conn:
        conn.execute(insert(raw_counts), row)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(raw_counts), {**row, "day": date(2021, 3, 11)})


def test_ingest_counts_rejections_and_logs_them(
    settings: Settings, small_raw: pd.DataFrame, tmp_path: Path
) -> None:
    raw = small_raw[small_raw[TIMESTAMP].str.startswith(DAY.isoformat())].copy()
    raw.loc[raw.index[0], COUNT] = -4
    raw.loc[raw.index[1], TIMESTAMP] = f"{DAY.isoformat()}T25:00:00"
    drop = tmp_path / "drop"
    write_records(raw, drop / "a.csv")
    write_records(raw.iloc[2:3], drop / "b.csv")  # the same counter and hour again
    write_records(small_raw.iloc[:50], drop / "other_day.csv")
    result = ingest(settings, DAY, drop)
    assert result.rows_in == len(raw) + 1
    assert result.rows_written == len(raw) - 2
    assert result.rows_rejected == 3
    assert result.reasons[DUPLICATE_REASON] == 1 and len(result.reasons) == 3
    again = ingest(settings, DAY, drop)
    assert again.rows_written == result.rows_written
    engine = open_store(settings.pipeline_db_url)
    assert len(read_counts(engine)) == result.rows_written
    log = read_table(engine, ingest_log)
    assert list(log["rows_rejected"]) == [3, 3] and log["reasons"].iloc[0] == result.reasons


def test_ingest_refuses_an_empty_folder(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no record file"):
        ingest(settings, DAY, tmp_path / "empty")


def test_known_counters_and_the_day_grid(engine: Engine, small_frame: pd.DataFrame) -> None:
    assert last_day(engine) is None
    replace_day_counts(engine, DAY, day_of(small_frame, DAY))
    assert last_day(engine) == DAY
    counters = known_counters(engine)
    assert len(counters) == 6 and counters["counter"].is_unique
    assert len(day_hours(DST_DAY)) == 23 and len(day_hours(date(2021, 10, 31))) == 25
    grid = day_grid(counters, DST_DAY)
    assert len(grid) == 6 * 23 and set(grid["timestamp"].dt.date) == {DST_DAY}


def test_audit_rows_keep_every_decision(engine: Engine) -> None:
    first = write_audit(engine, {
        "model_type": "gbm", "forced": False, "drift_detected": False, "drift_share": 0.1,
        "champion_version": 1, "champion_metrics": {"r2": 0.8}, "retrained": False,
        "promoted": False, "reason": "no drift",
    })  # fmt: skip
    second = write_audit(engine, {
        "model_type": "gbm", "forced": True, "retrained": True, "new_version": 2,
        "promoted": True, "reason": "forced",
    })  # fmt: skip
    rows = read_table(engine, audit)
    assert list(rows["id"]) == [first, second]
    assert list(rows["reason"]) == ["no drift", "forced"]
    assert rows["champion_metrics"].iloc[0] == {"r2": 0.8}
    assert rows["run_at"].notna().all()


def test_a_store_made_before_intervals_gets_their_columns_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as conn:  # the predictions table as stores were created before intervals
        conn.execute(
            text(
                "CREATE TABLE predictions (id INTEGER PRIMARY KEY, day DATE NOT NULL, "
                "counter VARCHAR(255) NOT NULL, timestamp DATETIME NOT NULL, "
                "prediction FLOAT NOT NULL, model_type VARCHAR(32) NOT NULL, "
                "model_version INTEGER NOT NULL, predicted_at DATETIME NOT NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO predictions (day, counter, timestamp, prediction, model_type, "
                "model_version, predicted_at) VALUES ('2021-03-10', 'a', "
                "'2021-03-10 07:00:00', 12.5, 'gbm', 1, '2021-03-10 00:05:00')"
            )
        )

    engine = open_store(url)

    kept = read_predictions(engine, DAY, "gbm")
    assert kept["prediction"].tolist() == [12.5] and kept["lower"].isna().all()
    open_store(url)  # a second opening adds nothing


def test_predictions_keep_their_interval_and_calibrate_the_next_days(
    engine: Engine, small_frame: pd.DataFrame
) -> None:
    counts = day_of(small_frame, DAY)
    replace_day_counts(engine, DAY, counts)
    forecast = counts[["counter", "timestamp"]].assign(
        prediction=counts["count"].to_numpy() * 1.1 + 1, model_version=3
    )
    forecast["lower"], forecast["upper"] = forecast["prediction"] / 2, forecast["prediction"] * 2
    forecast.iloc[0, forecast.columns.get_loc("lower")] = float("nan")  # none calibrated
    replace_predictions(engine, DAY, forecast, "gbm")

    stored = read_predictions(engine, DAY, "gbm").sort_values(["counter", "timestamp"])
    assert stored["lower"].isna().sum() == 1
    assert (stored["upper"] == stored["prediction"] * 2).all()
    calibration = recent_calibration(engine, DAY + timedelta(days=1), "gbm", days=7)
    assert calibration is not None and calibration.residuals == len(counts)
    assert calibration.source == "pipeline"
    # The stored forecasts ran above their counts: so do the intervals learned from them.
    lower, upper = calibration.bounds(np.array([100.0]), 0.8)
    assert upper[0] < 100.0
    assert recent_calibration(engine, DAY, "gbm", days=7) is None  # nothing scored before
