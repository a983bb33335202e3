"""bikecount_monitor_and_retrain: weekly drift check, champion score, and retraining when due.

``assess`` compares the recent stored counts with the reference data (Evidently) and scores the
champion on them; retraining is due when drift is detected and the champion's R² fell below
BIKECOUNT_RETRAIN_R2_THRESHOLD, or when the run is forced (``{"force": true}``). ``retrain``
trains through ``POST /train`` on reference + every stored day, holding out the recent days;
the API crowns the new version only if it beats the champion on them. ``record`` writes the
audit row and the MLflow run whatever happened, then fails the run if the retraining did.
Without Airflow: ``bikecount pipeline monitor-retrain [--force]``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from bikecount.pipeline.schedule import dag_arguments, saying_faults, task_settings

logger = logging.getLogger(__name__)
# Heavy imports (pandas, MLflow, Evidently) and the settings wait for the tasks: DAG files are
# parsed often.


@dag(
    dag_id="bikecount_monitor_and_retrain",
    schedule="@weekly",
    max_active_runs=1,
    params={"force": Param(False, type="boolean", description="Retrain whatever drift says")},
    doc_md=__doc__,
    **dag_arguments(),
)
def bikecount_monitor_and_retrain() -> None:
    @task
    def assess_drift_and_champion() -> dict[str, Any]:
        """Drift and the champion's score on recent data, and the decision with its reason."""
        from bikecount.pipeline.retrain import assess
        from bikecount.registry import Registry

        force = bool(get_current_context()["params"].get("force"))
        settings = task_settings()
        with saying_faults():
            result = assess(settings, Registry(settings), force=force)
        logger.info("retrain %s: %s", "due" if result.retrain_due else "not due", result.reason)
        return result.as_dict()

    @task
    def retrain_if_due(assessed: dict[str, Any]) -> dict[str, Any]:
        """Train through the API when due; the API decides the promotion."""
        from bikecount.pipeline.retrain import RetrainResult, retrain

        with saying_faults():
            return retrain(task_settings(), RetrainResult.from_dict(assessed)).as_dict()

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def record_decision(assessed: dict[str, Any]) -> dict[str, Any]:
        """Audit row and MLflow run for every outcome; fail the run if retraining failed."""
        from bikecount.pipeline import PipelineError
        from bikecount.pipeline.retrain import RetrainResult, record
        from bikecount.registry import Registry

        trained = get_current_context()["ti"].xcom_pull(task_ids="retrain_if_due")
        failure = None if trained else "the retrain_if_due task failed (see its log)"
        settings = task_settings()
        outcome = RetrainResult.from_dict(trained or assessed)
        with saying_faults():
            result = record(settings, Registry(settings), outcome, failure=failure)
        if failure:
            raise PipelineError(f"audit row {result.audit_id}: {result.reason}")
        return result.as_dict()

    assessed = assess_drift_and_champion()
    retrained = retrain_if_due(assessed)
    recorded = record_decision(assessed)
    retrained >> recorded


bikecount_monitor_and_retrain()
