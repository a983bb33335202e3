"""bikecount_daily_predict: once the day is ingested, score it and forecast the next one.

The day that just ended has its counts now, so yesterday's forecast of it is scored (RMSE, MAE
per model version); then every known counter's hours of the next day are predicted through the
RegModel API (``POST /predict``, batched) and stored with the version that made them. The same
steps without Airflow: ``bikecount pipeline score --date D`` and ``predict --date D+1``.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task

from bikecount.pipeline.schedule import context_day, dag_arguments, saying_faults, task_settings

logger = logging.getLogger(__name__)
# Heavy imports (pandas, MLflow, Evidently) and the settings wait for the tasks: DAG files are
# parsed often.


@dag(
    dag_id="bikecount_daily_predict",
    schedule="@daily",
    params={
        "day": Param(
            None, type=["null", "string"], description="YYYY-MM-DD; default: the day before the run"
        )
    },
    doc_md=__doc__,
    **dag_arguments(),
)
def bikecount_daily_predict() -> None:
    # Waits on the store, not on the ingest DAG: a day ingested by hand counts as well.
    @task.sensor(poke_interval=300, timeout=12 * 3600, mode="reschedule")
    def wait_for_ingest() -> PokeReturnValue:
        """Wait until the day has stored counts."""
        from bikecount.pipeline.store import ingested_days
        from bikecount.pipeline.store_engine import open_pipeline_store

        day = context_day(get_current_context())
        with saying_faults():
            done = day in ingested_days(open_pipeline_store(task_settings()), day, day)
        logger.info("day %s %s", day, "ingested" if done else "not ingested yet")
        return PokeReturnValue(is_done=done, xcom_value=day.isoformat())

    @task
    def score(day: str) -> dict[str, Any]:
        """Score the stored forecast of the ingested day against its counts."""
        from bikecount.pipeline.predict import score_day

        with saying_faults():
            result = score_day(task_settings(), date.fromisoformat(day))
        logger.info("%s: %s", day, result.reason or result.errors)
        return {
            "day": result.day,
            "reason": result.reason,
            "errors": {str(v): e for v, e in result.errors.items()},
        }

    @task
    def predict_next_day(day: str) -> dict[str, Any]:
        """Forecast the next day through the API and store it with the model version."""
        from bikecount.pipeline.predict import predict_day

        with saying_faults():
            result = predict_day(task_settings(), date.fromisoformat(day) + timedelta(days=1))
        return {
            "day": result.day,
            "rows": result.rows,
            "counters": result.counters,
            "versions": result.versions,
        }

    day = wait_for_ingest()
    score(day)
    predict_next_day(day)


bikecount_daily_predict()
