"""The three DAGs run by Airflow itself (``dag.test()``) against a real MLflow server and API.

Airflow runs in a subprocess per DAG run (``airflow_runner.py``) with its own metadata
database; the tasks reach a real RegModel API, a real ``mlflow server`` and a local stand-in for
Paris Open Data. The data are generated (8 counters, September to November 2020) with a planted
shift: from 10 November, Open Data counts fall to 35% of what the generator made (a lockdown),
while the file-drop fallback holds the unshifted counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import pytest
from opendata_server import OpenDataServer, serving
from servers import (
    REGMODEL_APP,
    Tracking,
    api_env,
    running,
    start_api,
    train_first_model,
    write_test_data,
)

import helpers
from airflow_runner import MARKER
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.pipeline.ingest import ingest
from bikecount.pipeline.store import (
    audit,
    daily_errors,
    ingest_log,
    predictions,
    read_counts,
    read_health,
    read_table,
)
from bikecount.pipeline.store_engine import open_store
from bikecount.records import COUNT, PARIS_TZ, TIMESTAMP, parse_timestamps
from helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNNER = REPO / "tests" / "airflow_runner.py"
DAGS = REPO / "dags"
API_KEY = "airflow-key-51c9"
N_COUNTERS = 8  # api_server.DATA_CONFIG
SHIFT, SHIFT_START = 0.35, date(2020, 11, 10)
DAY = date(2020, 11, 20)
# 10 to 30 November in the store: the last 14 are the recent days checked and, when retraining,
# the holdout; the 7 before them are what a retrained model can learn the shift from.
RECENT = [date(2020, 11, 10) + timedelta(days=i) for i in range(21)]
RUN_TIMEOUT_SECONDS = 420
THRESHOLD = 0.3


@dataclass
class Stack:
    root: Path
    env: dict[str, str]  # the Airflow processes' environment: Airflow and bikecount settings
    api_url: str
    opendata: OpenDataServer
    champion: int

    def settings(self, store: str) -> Settings:
        """The pipeline settings of the DAG runs, for a store of this test's own."""
        return Settings(
            _env_file=None,
            data_dir=self.root / "data",
            pipeline_db_url=store_url(self.root, store),
            pipeline_source=str(self.root / "drop"),
        )


def store_url(root: Path, name: str) -> str:
    return f"sqlite:///{root / name}"


def plant_shift(raw: pd.DataFrame, start: date, factor: float) -> pd.DataFrame:
    """The raw export with counts from ``start`` on scaled by ``factor``."""
    shifted = raw.copy()
    after = parse_timestamps(shifted[TIMESTAMP]).dt.date >= start
    counts = pd.to_numeric(shifted[COUNT])
    shifted[COUNT] = counts.where(~after, (counts * factor).round()).astype(int).astype(str)
    return shifted


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking: Tracking) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("airflow")
    data = write_test_data(root / "data")
    current = read_records(data.dataset_path("current"))
    write_records(current, root / "drop" / "current.csv")
    write_records(plant_shift(current, SHIFT_START, SHIFT), root / "shifted" / "current.csv")
    regmodel = start_api(
        "regmodel",
        REGMODEL_APP,
        root,
        api_env(root, tracking, model_check_seconds=0, api_key=API_KEY),
    )
    with (
        serving(read_records(root / "shifted" / "current.csv")) as opendata,
        running(regmodel),
    ):
        champion = train_first_model(regmodel, API_KEY)
        env = airflow_env(root, tracking, regmodel.url, opendata.url)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env, cwd=root, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        yield Stack(root, env, regmodel.url, opendata, champion)
        assert "Traceback" not in regmodel.log(), regmodel.log()


def airflow_env(root: Path, tracking: Tracking, api_url: str, opendata_url: str) -> dict[str, str]:
    """Airflow in ``root/airflow`` (SQLite, no examples), the repository's DAGs, and the
    pipeline settings of a test stack: fast test-mode training, one retry without delay."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BIKECOUNT_", "MLFLOW_", "AIRFLOW"))
    }
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        BIKECOUNT_ENV="dev",
        BIKECOUNT_DATA_DIR=str(root / "data"),
        BIKECOUNT_MLFLOW_TRACKING_URI=tracking.url,
        BIKECOUNT_MLFLOW_PREFIX=tracking.prefix,
        BIKECOUNT_ARTIFACTS_DIR=str(root / "artifacts"),
        BIKECOUNT_REPORTS_DIR=str(root / "reports"),
        BIKECOUNT_API_KEY=API_KEY,
        BIKECOUNT_PIPELINE_API_URL=api_url,
        BIKECOUNT_OPEN_DATA_URL=opendata_url,
        BIKECOUNT_PIPELINE_SOURCE=str(root / "drop"),
        BIKECOUNT_PIPELINE_DB_URL=store_url(root, "store.db"),
        BIKECOUNT_PIPELINE_TEST_MODE="true",
        BIKECOUNT_PIPELINE_MODEL_TYPE="gbm",  # the stack's one champion (train_first_model)
        BIKECOUNT_PIPELINE_RECENT_DAYS="14",
        BIKECOUNT_PIPELINE_RETRIES="1",
        BIKECOUNT_PIPELINE_RETRY_DELAY_SECONDS="0",
        # The bar for this small test-mode champion: R² about 0.47 on the unshifted recent
        # weeks, far below zero on the shifted ones.
        BIKECOUNT_RETRAIN_R2_THRESHOLD=str(THRESHOLD),
        OMP_NUM_THREADS="1",
    )
    return env


def run_dag(
    stack: Stack, dag_id: str, day: date, store: str, conf: dict[str, Any] | None = None,
    **settings: str,
) -> dict[str, Any]:  # fmt: skip
    """Run ``dag_id`` with ``dag.test()`` as the scheduler would after ``day`` (midnight, Paris).

    ``settings`` are ``BIKECOUNT_*`` overrides, named without the prefix.
    """
    env = {**stack.env, "BIKECOUNT_PIPELINE_DB_URL": store_url(stack.root, store)}
    env.update({f"BIKECOUNT_{key.upper()}": value for key, value in settings.items()})
    due = datetime.combine(day + timedelta(days=1), time(), ZoneInfo(PARIS_TZ)).isoformat()
    command = [sys.executable, str(RUNNER), "run", str(DAGS), dag_id, due, json.dumps(conf or {})]
    done = subprocess.run(
        command, env=env, cwd=stack.root, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert done.returncode == 0 and lines, done.stdout[-5000:] + done.stderr[-5000:]
    result = json.loads(lines[-1][len(MARKER) :])
    result["log"] = done.stdout + done.stderr
    return result


def states(result: dict[str, Any]) -> dict[str, str]:
    return {task: info["state"] for task, info in result["tasks"].items()}


def day_total(path: Path, day: date) -> float:
    raw = read_records(path)
    on_day = parse_timestamps(raw[TIMESTAMP]).dt.date == day
    return float(pd.to_numeric(raw.loc[on_day, COUNT]).sum())


def test_ingest_reads_open_data_and_a_second_run_replaces_the_day(stack: Stack) -> None:
    stack.opendata.requests.clear()
    first = run_dag(stack, "bikecount_daily_ingest", DAY, "ingest.db")
    second = run_dag(stack, "bikecount_daily_ingest", DAY, "ingest.db")
    for run in (first, second):
        assert run["state"] == "success", run["log"][-3000:]
        assert states(run) == {"ingest": "success", "report": "success", "check_health": "success"}
        checked = run["tasks"]["check_health"]["result"]
        assert checked["day"] == DAY.isoformat() and checked["counters"] == N_COUNTERS
        report = run["tasks"]["ingest"]["result"]
        assert report["day"] == DAY.isoformat() and report["source"] == "opendata"
        assert report["rows_in"] == report["rows_written"] == N_COUNTERS * 24
        assert report["rows_rejected"] == 0 and report["note"] is None
    # Each run asked Open Data for the day before it was due, and for nothing else.
    next_day = DAY + timedelta(days=1)
    window = f"date >= date'{DAY}T00:00:00+01:00' AND date < date'{next_day}T00:00:00+01:00'"
    assert [q["where"] for q in stack.opendata.requests] == [[window]] * 2
    engine = open_store(stack.settings("ingest.db").pipeline_db_url)
    stored = read_counts(engine)
    assert len(stored) == N_COUNTERS * 24 and not stored.duplicated(["counter", "timestamp"]).any()
    assert stored["count"].sum() == day_total(stack.root / "shifted" / "current.csv", DAY)
    assert len(read_table(engine, ingest_log)) == 2
    assert len(read_health(engine, DAY)) == N_COUNTERS  # the second check replaced the first


def test_ingest_falls_back_to_the_drop_folder_when_open_data_is_down(stack: Stack) -> None:
    dead = f"http://127.0.0.1:{helpers.free_port()}/exports/csv"
    run = run_dag(stack, "bikecount_daily_ingest", DAY, "fallback.db", open_data_url=dead)
    assert run["state"] == "success", run["log"][-3000:]
    report = run["tasks"]["ingest"]["result"]
    assert report["source"] == str(stack.root / "drop")
    assert report["note"].startswith("Paris Open Data unreachable (could not reach")
    assert report["note"].endswith(f"read {stack.root / 'drop'} instead")
    stored = read_counts(open_store(stack.settings("fallback.db").pipeline_db_url))
    assert stored["count"].sum() == day_total(stack.root / "drop" / "current.csv", DAY)


def test_ingest_refuses_to_shrink_a_stored_day_unless_the_run_forces_it(stack: Stack) -> None:
    settings = stack.settings("shrink.db")
    ingest(settings, DAY, stack.root / "drop")
    current = read_records(stack.root / "drop" / "current.csv")
    of_day = current[parse_timestamps(current[TIMESTAMP]).dt.date == DAY]
    write_records(of_day.head(1), stack.root / "one_row" / "export.csv")
    dead = f"http://127.0.0.1:{helpers.free_port()}/exports/csv"
    source = {"open_data_url": dead, "pipeline_source": str(stack.root / "one_row")}

    no_retry = {**source, "pipeline_retries": "0"}  # the refusal is the same on every try
    refused = run_dag(stack, "bikecount_daily_ingest", DAY, "shrink.db", **no_retry)
    assert refused["state"] == "failed" and refused["tasks"]["ingest"]["state"] == "failed"
    assert "re-ingest refused: 1 valid rows of 2020-11-20" in refused["log"]
    engine = open_store(settings.pipeline_db_url)
    assert len(read_counts(engine)) == N_COUNTERS * 24

    forced = run_dag(stack, "bikecount_daily_ingest", DAY, "shrink.db", {"force": True}, **source)
    assert forced["state"] == "success", forced["log"][-3000:]
    assert forced["tasks"]["ingest"]["result"]["note"].startswith("Paris Open Data unreachable")
    assert "forced: the stored day shrank" in forced["tasks"]["ingest"]["result"]["note"]
    assert len(read_counts(engine)) == 1
    logged = [next(iter(r), None) for r in read_table(engine, ingest_log)["reasons"]]
    assert logged[1:] == [
        "re-ingest refused: it would shrink the stored day (stored rows kept)",
        "re-ingest forced: the stored day shrank (stored rows replaced)",
    ]


def test_predict_forecasts_the_next_day_and_scores_it_once_counted(stack: Stack) -> None:
    settings = stack.settings("predict.db")
    ingest(settings, DAY, stack.root / "drop")
    first = run_dag(stack, "bikecount_daily_predict", DAY, "predict.db")
    assert first["state"] == "success", first["log"][-3000:]
    assert first["tasks"]["score"]["result"]["reason"] == "no stored predictions"
    forecast = first["tasks"]["predict_next_day"]["result"]
    assert forecast["day"] == (DAY + timedelta(days=1)).isoformat()
    assert forecast["rows"] == N_COUNTERS * 24 and forecast["versions"] == [stack.champion]

    ingest(settings, DAY + timedelta(days=1), stack.root / "drop")  # the forecast day's counts
    second = run_dag(stack, "bikecount_daily_predict", DAY + timedelta(days=1), "predict.db")
    assert states(second) == dict.fromkeys(
        ("wait_for_ingest", "score", "predict_next_day"), "success"
    )
    scored = second["tasks"]["score"]["result"]
    assert scored["reason"] is None and list(scored["errors"]) == [str(stack.champion)]
    engine = open_store(settings.pipeline_db_url)
    errors = read_table(engine, daily_errors)
    assert list(errors["day"]) == [DAY + timedelta(days=1)]
    assert (
        errors["n"].iloc[0] == N_COUNTERS * 24
        and errors["rmse"].iloc[0] >= errors["mae"].iloc[0] > 0
    )
    stored = read_table(engine, predictions)
    assert sorted(set(stored["day"])) == [DAY + timedelta(days=1), DAY + timedelta(days=2)]
    assert len(stored) == 2 * N_COUNTERS * 24


def test_predict_with_the_api_down_fails_after_its_retries_and_stores_nothing(
    stack: Stack,
) -> None:
    settings = stack.settings("down.db")
    ingest(settings, DAY, stack.root / "drop")
    dead = f"http://127.0.0.1:{helpers.free_port()}"
    run = run_dag(stack, "bikecount_daily_predict", DAY, "down.db", pipeline_api_url=dead)
    assert run["state"] == "failed"
    assert run["tasks"]["predict_next_day"] == {"state": "failed", "try_number": 2, "result": None}
    assert run["tasks"]["wait_for_ingest"]["state"] == "success"
    assert f"the RegModel API at {dead} is unreachable" in run["log"]
    engine = open_store(settings.pipeline_db_url)
    assert read_table(engine, predictions).empty and len(read_counts(engine)) == N_COUNTERS * 24


def load_recent(stack: Stack, store: str, source: Path) -> Settings:
    """The recent weeks ingested into ``store`` directly (one DAG run per day would be slow)."""
    settings = stack.settings(store)
    for day in RECENT:
        ingest(settings, day, source)
    return settings


def champion_version(stack: Stack) -> int:
    models = httpx.get(stack.api_url + "/models", timeout=30).json()
    return next(
        m["version"] for m in models["models"] if m["model_type"] == "gbm" and m["champion"]
    )


# Runs before the retraining test below: that one crowns a model of the shifted weeks, which
# would do badly on these unshifted ones.
def test_monitor_does_not_retrain_when_the_champion_holds(stack: Stack) -> None:
    settings = load_recent(stack, "holds.db", stack.root / "drop")
    # The drift-and-R² path alone: the test-mode champion's error share is far from its
    # holdout's, so the decay rule is set out of reach here (it has tests of its own).
    run = run_dag(
        stack, "bikecount_monitor_and_retrain", RECENT[-1], "holds.db", retrain_decay_ratio="1000"
    )
    assert run["state"] == "success", run["log"][-3000:]
    assessed = run["tasks"]["assess_drift_and_champion"]["result"]
    assert not assessed["retrain_due"], assessed["reason"]
    recorded = run["tasks"]["record_decision"]["result"]
    assert not recorded["retrained"] and recorded["new_version"] is None
    row = read_table(open_store(settings.pipeline_db_url), audit).iloc[-1]
    assert not row["retrained"] and not row["promoted"] and row["reason"] == assessed["reason"]
    assert row["reason"].startswith("drift detected but champion holds")
    assert row["drift_detected"] and row["champion_metrics"]["r2"] >= THRESHOLD
    assert champion_version(stack) == stack.champion


def test_monitor_retrains_and_promotes_when_the_shift_hurts(stack: Stack) -> None:
    settings = load_recent(stack, "shifted.db", stack.root / "shifted")
    run = run_dag(stack, "bikecount_monitor_and_retrain", RECENT[-1], "shifted.db")
    assert run["state"] == "success", run["log"][-3000:]
    assert set(states(run).values()) == {"success"}
    assessed = run["tasks"]["assess_drift_and_champion"]["result"]
    assert assessed["drift_detected"] and assessed["retrain_due"], assessed["reason"]
    assert assessed["champion_metrics"]["r2"] < THRESHOLD
    recorded = run["tasks"]["record_decision"]["result"]
    assert recorded["retrained"] and recorded["promoted"], recorded["reason"]
    assert recorded["new_version"] > stack.champion
    # Both were scored on the recent days: the new model on its holdout, the champion by assess.
    assert recorded["holdout_from"] == (RECENT[-1] - timedelta(days=13)).isoformat()
    assert recorded["new_metrics"]["rmse"] < assessed["champion_metrics"]["rmse"]
    row = read_table(open_store(settings.pipeline_db_url), audit).iloc[-1]
    assert row["reason"] == recorded["reason"]
    # The shift hurts so much that the champion's recent RMSE decayed past its holdout's.
    assert row["reason"].startswith("champion decayed: "), row["reason"]
    assert "counts drifted" in row["reason"]
    assert f"retrained v{recorded['new_version']}, promoted" in row["reason"]
    assert row["mlflow_run_id"] == recorded["run_id"]
    assert champion_version(stack) == recorded["new_version"]


def test_forced_retraining_with_the_api_down_is_audited_and_fails_the_run(stack: Stack) -> None:
    settings = load_recent(stack, "forced.db", stack.root / "drop")
    before = champion_version(stack)
    dead = f"http://127.0.0.1:{helpers.free_port()}"
    run = run_dag(
        stack, "bikecount_monitor_and_retrain", RECENT[-1], "forced.db", {"force": True},
        pipeline_api_url=dead,
    )  # fmt: skip
    assert run["state"] == "failed"
    assert states(run) == {
        "assess_drift_and_champion": "success",
        "retrain_if_due": "failed",
        "record_decision": "failed",
    }
    assert run["tasks"]["retrain_if_due"]["try_number"] == 2
    rows = read_table(open_store(settings.pipeline_db_url), audit)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["forced"] and not row["retrained"] and not row["promoted"]
    assert row["reason"].startswith("forced;")
    assert row["reason"].endswith("retraining failed: the retrain_if_due task failed (see its log)")
    assert f"the RegModel API at {dead} is unreachable" in run["log"]
    assert champion_version(stack) == before
