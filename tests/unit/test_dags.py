"""The DAG files as Airflow's own DagBag imports them: no errors, the tasks, wiring and schedules.

Airflow runs in a subprocess (``airflow_runner.py``) with an empty ``AIRFLOW_HOME`` of its own;
parsing a DAG folder needs no metadata database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from airflow_runner import MARKER
from helpers import REPO

DAGS = REPO / "dags"
RUNNER = REPO / "tests" / "airflow_runner.py"


@pytest.fixture(scope="module")
def described(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BIKECOUNT_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        BIKECOUNT_PIPELINE_RETRIES="3",
        BIKECOUNT_PIPELINE_RETRY_DELAY_SECONDS="120",
    )
    done = subprocess.run(
        [sys.executable, str(RUNNER), "describe", str(DAGS)],
        env=env, cwd=home, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len(MARKER) :])


def test_the_dag_folder_imports_without_errors(described: dict[str, Any]) -> None:
    assert described["import_errors"] == {}
    assert set(described["dags"]) == {
        "bikecount_daily_ingest",
        "bikecount_daily_predict",
        "bikecount_monitor_and_retrain",
    }


@pytest.mark.parametrize(
    ("dag_id", "expression", "params"),
    [
        ("bikecount_daily_ingest", "0 0 * * *", ["day", "force"]),  # @daily
        ("bikecount_daily_predict", "0 0 * * *", ["day"]),
        ("bikecount_monitor_and_retrain", "0 0 * * 0", ["force"]),  # @weekly
    ],
)
def test_schedules_run_at_paris_midnight_without_catching_up(
    described: dict[str, Any], dag_id: str, expression: str, params: list[str]
) -> None:
    dag = described["dags"][dag_id]
    assert dag["expression"] == expression and dag["timezone"] == "Europe/Paris"
    assert not dag["catchup"] and dag["params"] == params


def test_days_run_side_by_side_but_retraining_runs_alone(described: dict[str, Any]) -> None:
    # A day's predict run waiting for its counts must not hold back another day's (a backfill).
    dags = described["dags"]
    assert dags["bikecount_daily_ingest"]["max_active_runs"] > 1
    assert dags["bikecount_daily_predict"]["max_active_runs"] > 1
    assert dags["bikecount_monitor_and_retrain"]["max_active_runs"] == 1


def wiring(described: dict[str, Any], dag_id: str) -> dict[str, list[str]]:
    return {task: info["downstream"] for task, info in described["dags"][dag_id]["tasks"].items()}


def test_ingest_reports_and_checks_the_counters_health_after_ingesting(
    described: dict[str, Any],
) -> None:
    assert wiring(described, "bikecount_daily_ingest") == {
        "ingest": ["check_health", "report"],
        "check_health": [],
        "report": [],
    }


def test_predict_waits_for_the_ingested_day_then_scores_and_forecasts(
    described: dict[str, Any],
) -> None:
    assert wiring(described, "bikecount_daily_predict") == {
        "wait_for_ingest": ["predict_next_day", "score"],
        "score": [],
        "predict_next_day": [],
    }


def test_monitor_records_the_decision_whatever_the_retraining_did(
    described: dict[str, Any],
) -> None:
    tasks = described["dags"]["bikecount_monitor_and_retrain"]["tasks"]
    assert wiring(described, "bikecount_monitor_and_retrain") == {
        "assess_drift_and_champion": ["record_decision", "retrain_if_due"],
        "retrain_if_due": ["record_decision"],
        "record_decision": [],
    }
    assert tasks["record_decision"]["trigger_rule"] == "TriggerRule.ALL_DONE"
    assert tasks["record_decision"]["retries"] == 0  # one audit row per run, not per try


def test_retries_come_from_the_settings(described: dict[str, Any]) -> None:
    for dag_id in ("bikecount_daily_ingest", "bikecount_daily_predict"):
        for task in described["dags"][dag_id]["tasks"].values():
            assert (task["retries"], task["retry_delay"]) == (3, 120.0)
    retrain = described["dags"]["bikecount_monitor_and_retrain"]["tasks"]["retrain_if_due"]
    assert (retrain["retries"], retrain["retry_delay"]) == (3, 120.0)
