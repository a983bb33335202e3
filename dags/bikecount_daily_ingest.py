"""bikecount_daily_ingest: the day that just ended, from Paris Open Data into the pipeline store,
then every counter's health on it.

Thin tasks over ``bikecount.pipeline``; ``bikecount pipeline ingest --date D`` and ``bikecount
pipeline health --date D`` are the same steps without Airflow. Give ``{"day": "YYYY-MM-DD"}`` as
the run's configuration to (re)ingest a day: a day ingested twice is replaced, never duplicated.
A re-ingest that would shrink a stored day materially fails the run and keeps the day, unless
the configuration says ``{"force": true}``. Faults found by the health check go to
Alertmanager when BIKECOUNT_ALERTMANAGER_URL is set.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from bikecount.pipeline.schedule import context_day, dag_arguments, saying_faults, task_settings

logger = logging.getLogger(__name__)
# Heavy imports (pandas, MLflow, Evidently) and the settings wait for the tasks: DAG files are
# parsed often.


@dag(
    dag_id="bikecount_daily_ingest",
    schedule="@daily",
    params={
        "day": Param(
            None, type=["null", "string"], description="YYYY-MM-DD; default: the day before the run"
        ),
        "force": Param(
            False,
            type="boolean",
            description="Replace a stored day even by materially fewer rows",
        ),
    },
    doc_md=__doc__,
    **dag_arguments(),
)
def bikecount_daily_ingest() -> None:
    @task
    def ingest() -> dict[str, Any]:
        """Fetch the day, validate it against the record contract and replace it in the store."""
        from bikecount.pipeline.ingest import ingest_day

        context = get_current_context()
        force = bool(context["params"].get("force", False))
        with saying_faults():
            return ingest_day(task_settings(), context_day(context), force=force).as_dict()

    @task
    def report(result: dict[str, Any]) -> None:
        """Log rows in, stored and rejected (and why); fail when too many rows were rejected."""
        from bikecount.pipeline.ingest import IngestResult, check_rejections

        ingested = IngestResult(**result)
        logger.info(
            "%s from %s: %d rows in, %d stored, %d rejected",
            ingested.day,
            ingested.source,
            ingested.rows_in,
            ingested.rows_written,
            ingested.rows_rejected,
        )
        for reason, count in ingested.reasons.items():
            logger.info("rejected %d × %s", count, reason)
        if ingested.note:
            logger.warning("%s", ingested.note)
        check_rejections(ingested, task_settings().pipeline_max_rejected_share)

    @task
    def check_health(result: dict[str, Any]) -> dict[str, Any]:
        """Every counter's health on the ingested day, stored; its faults sent to Alertmanager
        (BIKECOUNT_ALERTMANAGER_URL) when the day is the latest stored one."""
        from datetime import date

        from bikecount.pipeline.health import check_day

        with saying_faults():
            checked = check_day(task_settings(), date.fromisoformat(result["day"]))
        logger.info("%s: %s; alerts %s", checked.day, checked.statuses, checked.alerts)
        for fault in checked.faults:
            logger.warning("%s %s: %s", fault["counter"], fault["status"], fault["reason"])
        return checked.as_dict()

    ingested = ingest()
    report(ingested)
    check_health(ingested)


bikecount_daily_ingest()
