"""``bikecount backtest``: a rolling origin, no look-ahead, and the command's outputs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers
from bikecount.backtest import run_backtest
from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.records import COUNT, parse_records

FAST_FOREST = {"n_estimators": 5, "max_leaf_nodes": 200}
INTERVAL_METRICS = {"interval_level", "interval_coverage", "interval_width_log1p"}
START, END = date(2021, 4, 20), date(2021, 4, 22)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return helpers.generate_raw()


@pytest.fixture(scope="module")
def records(raw: pd.DataFrame) -> pd.DataFrame:
    return parse_records(raw, require_count=True).frame


def backtest(records: pd.DataFrame, **kwargs: object):
    settings = Settings(_env_file=None)
    return run_backtest(
        records, "rf", START, END, settings, retrain_every=2, hyperparams=FAST_FOREST, **kwargs
    )


def test_each_day_is_forecast_and_the_model_retrained_every_n_days(records) -> None:
    progress: list[tuple[date, bool]] = []

    result = backtest(
        records, on_day=lambda day, done, total, retrained: progress.append((day, retrained))
    )

    days = [day["day"] for day in result.days]
    assert days == ["2021-04-20", "2021-04-21", "2021-04-22"]
    assert result.retrained_on == ["2021-04-20", "2021-04-22"]
    assert progress == [
        (date(2021, 4, 20), True),
        (date(2021, 4, 21), False),
        (date(2021, 4, 22), True),
    ]
    assert len(result.forecasts) == sum(day["rows"] for day in result.days) == 3 * 24 * 6
    assert (result.forecasts["prediction"] >= 0).all()
    assert set(result.metrics) == {"rmse", "mae", "r2", "rmse_log1p", *INTERVAL_METRICS}
    # A forecast, not noise: it follows the rhythm of the hours and counters.
    assert np.corrcoef(result.forecasts["prediction"], result.forecasts["count"])[0, 1] > 0.6
    assert set(result.per_counter_rmse) == set(records["counter"])


def test_each_forecast_has_an_interval_calibrated_on_the_days_before_it(records) -> None:
    result = backtest(records)

    forecasts = result.forecasts
    assert forecasts[["lower", "upper"]].notna().all().all()
    assert (forecasts["lower"] >= 0).all()
    assert (forecasts["lower"] <= forecasts["prediction"]).all()
    assert (forecasts["prediction"] <= forecasts["upper"]).all()
    # The first day's interval comes from the days before the period, forecast for it alone.
    assert result.calibrated_from == date(2021, 4, 6)
    assert 0.6 <= result.metrics["interval_coverage"] <= 0.95
    assert result.metrics["interval_level"] == 0.8
    assert all(0 <= day["interval_coverage"] <= 1 for day in result.days)


def test_without_days_to_calibrate_on_the_first_day_has_no_interval(records) -> None:
    settings = Settings(_env_file=None)
    first, second = date(2021, 3, 5), date(2021, 3, 6)  # the data starts on 1 March

    result = run_backtest(
        records, "rf", first, second, settings, retrain_every=2, hyperparams=FAST_FOREST
    )

    assert result.calibrated_from is None
    day = result.forecasts["timestamp"].dt.date
    assert result.forecasts.loc[day == first, ["lower", "upper"]].isna().all().all()
    assert result.forecasts.loc[day == second, ["lower", "upper"]].notna().all().all()
    assert [d["interval_coverage"] is None for d in result.days] == [True, False]


def test_a_wider_level_gives_wider_intervals(records) -> None:
    narrow = backtest(records, interval=0.5).metrics
    wide = backtest(records, interval=0.95).metrics

    assert wide["interval_width_log1p"] > narrow["interval_width_log1p"]
    assert wide["interval_coverage"] > narrow["interval_coverage"]


def test_changing_the_counts_of_a_day_never_changes_its_forecasts(records) -> None:
    day = records["timestamp"].dt.date == date(2021, 4, 21)
    changed = records.copy()
    changed.loc[day, "count"] = changed.loc[day, "count"] * 10 + 7

    before = backtest(records).forecasts
    after = backtest(changed).forecasts

    same_day = before["timestamp"].dt.date == date(2021, 4, 21)
    for column in ("prediction", "lower", "upper"):
        assert np.allclose(before.loc[same_day, column], after.loc[same_day, column])
    # The next day is trained and forecast knowing them: its forecasts move.
    next_day = before["timestamp"].dt.date == date(2021, 4, 22)
    assert not np.allclose(before.loc[next_day, "prediction"], after.loc[next_day, "prediction"])


@pytest.mark.parametrize(
    ("model", "start", "end", "message"),
    [
        ("rf_class", "2021-04-20", "2021-04-21", "backtest forecasts counts"),
        ("rf", "2021-04-22", "2021-04-20", "is before --start"),
        ("rf", "2021-03-01", "2021-03-02", "nothing to train on"),
        ("rf", "2021-07-01", "2021-07-02", "no record from"),
    ],
)
def test_impossible_backtests_are_refused_with_the_reason(
    records, model: str, start: str, end: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_backtest(
            records, model, date.fromisoformat(start), date.fromisoformat(end),
            Settings(_env_file=None), hyperparams={},
        )  # fmt: skip


def test_the_command_writes_forecasts_prints_json_and_logs_to_mlflow(
    raw: pd.DataFrame, tmp_path: Path
) -> None:
    data = write_records(raw, tmp_path / "counts.csv")
    output = tmp_path / "forecasts.csv"
    env = {
        "BIKECOUNT_MLRUNS_DIR": str(tmp_path / "mlruns"),
        "BIKECOUNT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "MLFLOW_TRACKING_URI": "",
        "BIKECOUNT_MLFLOW_PREFIX": "city-b",
        # No --model: the backtest forecasts with the pipeline's model.
        "BIKECOUNT_PIPELINE_MODEL_TYPE": "rf",
    }
    args = ["backtest", "--data", str(data), "--start", "2021-04-20",
            "--end", "2021-04-21", "-p", "n_estimators=5", "--output", str(output),
            "--json"]  # fmt: skip

    result = CliRunner().invoke(app, args, env=env)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model_type"] == "rf"
    assert set(summary["metrics"]) == {"rmse", "mae", "r2", "rmse_log1p", *INTERVAL_METRICS}
    assert summary["metrics"]["interval_level"] == 0.8
    assert 0 < summary["metrics"]["interval_width_log1p"]
    assert [day["day"] for day in summary["days"]] == ["2021-04-20", "2021-04-21"]
    assert summary["per_counter_rmse"]
    written = read_records(output)
    assert list(written.columns) == [*raw.columns, "prediction", "lower", "upper"]
    assert len(written) == 2 * 24 * 6
    bounds = written[["lower", "prediction", "upper"]].astype(float)
    assert (bounds["lower"] <= bounds["prediction"]).all()
    assert (bounds["prediction"] <= bounds["upper"]).all()
    assert (written[COUNT].astype(float) >= 0).all()
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    run = client.get_run(summary["run_id"])
    assert run.info.experiment_id == client.get_experiment_by_name("city-b-backtest").experiment_id
    assert run.data.params["retrain_every"] == "7"
    assert run.data.metrics["rmse"] == pytest.approx(summary["metrics"]["rmse"], rel=1e-3)
    assert run.data.metrics["interval_coverage"] == pytest.approx(
        summary["metrics"]["interval_coverage"], abs=1e-3
    )


def test_the_command_refuses_a_bad_interval_level_in_one_line(raw: pd.DataFrame, tmp_path: Path):
    data = write_records(raw, tmp_path / "counts.csv")
    args = ["backtest", "--data", str(data), "--start", "2021-04-20", "--end", "2021-04-20",
            "--interval", "1.5", "--no-mlflow"]  # fmt: skip

    result = CliRunner().invoke(app, args)

    assert result.exit_code != 0
    assert "interval level must be strictly between 0 and 1" in result.output
    assert "Traceback" not in result.output


def test_the_command_names_a_missing_file(tmp_path: Path) -> None:
    args = [
        "backtest",
        "--data",
        str(tmp_path / "nowhere.csv"),
        "--start",
        "2021-04-20",
        "--end",
        "2021-04-21",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "nowhere.csv" in result.output
