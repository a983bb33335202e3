"""The pipeline's steps end to end: a real MLflow server and RegModel API, a SQLite store.

One stack serves the module, with a test-mode gbm champion trained through ``POST /train``. Days
are taken from the generated data sets through a file-drop folder: November days (the current
set, after the reference period) for ingest, predict and a forced retraining; a week of October
(inside the reference period) for a run that finds no reason to retrain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from servers import (
    REGMODEL_APP,
    Tracking,
    api_env,
    running,
    start_api,
    train_first_model,
    write_test_data,
)
from typer.testing import CliRunner

import helpers
from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.pipeline import PipelineError
from bikecount.pipeline.ingest import ingest
from bikecount.pipeline.predict import predict_day
from bikecount.pipeline.retrain import RUN_NAME, monitor_and_retrain
from bikecount.pipeline.store import (
    audit,
    daily_errors,
    ingest_log,
    known_counters,
    predictions,
    read_counts,
    read_predictions,
    read_table,
)
from bikecount.pipeline.store_engine import open_store
from bikecount.records import to_raw_records
from bikecount.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "pipeline-key-7d2e"
N_COUNTERS = 8  # api_server.DATA_CONFIG
DAY = date(2020, 11, 20)
QUIET_WEEK = [date(2020, 10, 5) + timedelta(days=i) for i in range(7)]


@dataclass
class Stack:
    root: Path
    api_url: str
    settings: Settings  # the pipeline's settings: store, data folder, MLflow server
    champion: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking: Tracking) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("pipeline")
    data = write_test_data(root / "data")
    drop = root / "drop"
    write_records(read_records(data.dataset_path("current")), drop / "current.csv")
    write_records(read_records(data.dataset_path("reference")), root / "drop_ref" / "ref.csv")
    env = api_env(root, tracking, model_check_seconds=0, api_key=API_KEY)
    regmodel = start_api("regmodel", REGMODEL_APP, root, env)
    with running(regmodel):
        champion = train_first_model(regmodel, API_KEY)
        settings = pipeline_settings(root, tracking, "pipeline.db")
        yield Stack(root, regmodel.url, settings, champion)
        assert "Traceback" not in regmodel.log(), regmodel.log()


def pipeline_settings(root: Path, tracking: Tracking, db_name: str) -> Settings:
    return Settings(
        _env_file=None,
        env="dev",
        data_dir=root / "data",
        mlflow_tracking_uri=tracking.url,
        mlflow_prefix=tracking.prefix,
        artifacts_dir=root / "artifacts",
        reports_dir=root / "reports",
        pipeline_db_url=f"sqlite:///{root / db_name}",
        pipeline_model_type="gbm",  # the stack's one champion (train_first_model)
        api_key=API_KEY,
    )


def test_ingesting_a_day_twice_stores_it_once(stack: Stack) -> None:
    first = ingest(stack.settings, DAY, stack.root / "drop")
    second = ingest(stack.settings, DAY, stack.root / "drop")
    assert first.rows_in == second.rows_in == first.rows_written == N_COUNTERS * 24
    assert second.rows_rejected == 0 and second.reasons == {}
    engine = open_store(stack.settings.pipeline_db_url)
    stored = read_counts(engine)
    assert len(stored) == N_COUNTERS * 24
    assert not stored.duplicated(["counter", "timestamp"]).any()
    assert len(read_table(engine, ingest_log)) == 2


def test_predict_stores_predictions_and_errors_with_the_version(stack: Stack) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    result = predict_day(stack.settings, DAY, stack.api_url, "gbm", batch_size=50)
    assert result.rows == N_COUNTERS * 24 and result.versions == [stack.champion]
    engine = open_store(stack.settings.pipeline_db_url)
    stored = read_table(engine, predictions)
    assert len(stored) == N_COUNTERS * 24
    assert set(stored["model_version"]) == {stack.champion} and (stored["prediction"] >= 0).all()
    errors = read_table(engine, daily_errors)
    assert len(errors) == 1 and errors["n"].iloc[0] == N_COUNTERS * 24
    assert errors["rmse"].iloc[0] >= errors["mae"].iloc[0] > 0
    predict_day(stack.settings, DAY, stack.api_url, "gbm")  # a re-run replaces, never adds
    assert len(read_table(engine, predictions)) == N_COUNTERS * 24


def test_the_next_day_is_forecast_from_the_model_and_the_stored_days(stack: Stack) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    nxt = DAY + timedelta(days=1)

    predict_day(stack.settings, nxt, stack.api_url, "gbm")

    engine = open_store(stack.settings.pipeline_db_url)
    stored = read_table(engine, predictions)
    stored = stored[stored["day"].astype(str) == nxt.isoformat()].reset_index(drop=True)
    assert len(stored) == N_COUNTERS * 24
    places = known_counters(engine)
    grid = stored[["counter", "timestamp"]].merge(places, on="counter", how="left")
    grid["timestamp"] = pd.to_datetime(grid["timestamp"], utc=True).dt.tz_convert("Europe/Paris")
    payload = {"records": to_raw_records(grid).to_dict(orient="records"), "model_type": "gbm"}
    plain = np.asarray(
        httpx.post(f"{stack.api_url}/predict", json=payload, timeout=60).json()["predictions"]
    )
    # The served model, moved by the stored day's gaps (per counter and hour), within the cap.
    # (Hours the model forecasts at zero stay at zero.)
    moved = pd.Series(np.log1p(stored["prediction"]) - np.log1p(plain))[plain > 0.5]
    assert (moved.abs() <= np.log(stack.settings.forecast_max_factor) + 1e-6).all()
    assert (moved.abs() > 1e-2).mean() > 0.5, moved.describe()


def test_the_next_day_has_intervals_learned_from_the_stored_days(stack: Stack) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    predict_day(stack.settings, DAY, stack.api_url, "gbm")  # scored at once: its counts are in
    nxt = DAY + timedelta(days=1)

    predict_day(stack.settings, nxt, stack.api_url, "gbm")

    stored = read_predictions(open_store(stack.settings.pipeline_db_url), nxt, "gbm")
    assert len(stored) == N_COUNTERS * 24 and stored[["lower", "upper"]].notna().all().all()
    assert (stored["lower"] <= stored["upper"]).all()
    # Learned from one day of residuals, the band may sit off-centre, but around the forecast.
    inside = (stored["lower"] <= stored["prediction"]) & (stored["prediction"] <= stored["upper"])
    assert inside.mean() > 0.8


def test_api_down_is_a_clear_error_and_changes_nothing(stack: Stack) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    engine = open_store(stack.settings.pipeline_db_url)
    before = len(read_table(engine, predictions)), len(read_table(engine, daily_errors))
    dead_url = f"http://127.0.0.1:{helpers.free_port()}"
    with pytest.raises(PipelineError, match="unreachable.*is it running"):
        predict_day(stack.settings, DAY + timedelta(days=1), dead_url)
    after = len(read_table(engine, predictions)), len(read_table(engine, daily_errors))
    assert after == before


def test_drift_and_a_weak_champion_retrain_without_force(stack: Stack) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    # A bar no champion clears: the decision then rests on drift, found in November vs autumn.
    settings = stack.settings.model_copy(update={"retrain_r2_threshold": 0.999})
    result = monitor_and_retrain(settings, Registry(settings), stack.api_url, test_mode=True)
    assert result.drift_detected and result.retrained and not result.forced
    assert result.reason.startswith("drift detected and R² too low")
    row = read_table(open_store(settings.pipeline_db_url), audit).iloc[-1]
    assert row["retrained"] and not row["forced"] and row["reason"] == result.reason


def test_forced_retraining_is_audited_and_logged(stack: Stack, tracking: Tracking) -> None:
    ingest(stack.settings, DAY, stack.root / "drop")
    registry = Registry(stack.settings)
    result = monitor_and_retrain(
        stack.settings, registry, stack.api_url, force=True, test_mode=True
    )
    assert result.retrained and result.new_version is not None
    assert result.new_version > (result.champion_version or 0)
    assert result.reason.startswith("forced") and "retrained" in result.reason
    assert (stack.root / "data" / str(result.data_path)).is_file()
    rows = read_table(open_store(stack.settings.pipeline_db_url), audit)
    row = rows.iloc[-1]
    assert row["retrained"] and row["forced"] and row["new_version"] == result.new_version
    assert bool(row["promoted"]) == result.promoted and row["reason"] == result.reason
    # The champion of the moment (an earlier test may have crowned a newer one than the seed's).
    assert row["champion_version"] == result.champion_version >= stack.champion
    assert "r2" in row["champion_metrics"]

    client = MlflowClient(stack.settings.tracking_uri, stack.settings.tracking_uri)
    run = client.get_run(row["mlflow_run_id"])
    assert run.info.run_name == RUN_NAME
    assert client.get_experiment(run.info.experiment_id).name == tracking.name("monitoring")
    assert run.data.metrics["retrained"] == 1.0
    assert run.data.metrics["promoted"] == float(result.promoted)


def test_no_retraining_on_undrifted_data(
    stack: Stack, tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings(stack.root, tracking, "quiet.db")
    for day in QUIET_WEEK:
        ingest(settings, day, stack.root / "drop_ref")
    for key, value in settings.model_dump(mode="json").items():
        if value is not None and key != "api_key":
            monkeypatch.setenv(f"BIKECOUNT_{key.upper()}", str(value))
    monkeypatch.setenv("BIKECOUNT_API_KEY", API_KEY)
    monkeypatch.chdir(stack.root)
    result = CliRunner().invoke(
        app, ["pipeline", "monitor-retrain", "--json", "--api-url", stack.api_url]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert not summary["retrained"] and not summary["promoted"]
    assert summary["reason"].startswith("no drift: drift share")
    rows = read_table(open_store(settings.pipeline_db_url), audit)
    assert len(rows) == 1 and rows["reason"].iloc[0] == summary["reason"]
    assert not rows["retrained"].iloc[0] and rows["new_version"].isna().all()
