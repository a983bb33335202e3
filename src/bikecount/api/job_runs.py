"""Training jobs as MLflow keeps them, so that they survive the API process.

Jobs live in the memory of the API that runs them; their MLflow runs outlive it. Each run a job
starts is tagged with the job's id and with the API that owns it (``api_instance``: a setting,
the host name by default; ``api_process``: its pid and start time). When the job ends, the API
writes its outcome onto the run (``job_result`` or ``job_error``, JSON). Then:

- ``GET /train/{job_id}`` of a job no longer in memory (the API restarted) is answered from the
  run, by :func:`find_job`;
- at start, :func:`fail_orphaned_runs` marks FAILED (with the reason) the runs this instance
  owned that are still RUNNING although their API process is gone: killed mid-training, it could
  not end them. A run whose API process still lives (another replica) is left alone.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import get_args

import psutil
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bikecount.api.schemas import JobError, JobPublic, TrainPublic
from bikecount.config import Env, Settings
from bikecount.registry import Registry
from bikecount.stopping import STOPPED_TAG

logger = logging.getLogger(__name__)

JOB_ID_TAG = "job_id"
INSTANCE_TAG = "api_instance"
PROCESS_TAG = "api_process"
RESULT_TAG = "job_result"
ERROR_TAG = "job_error"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")  # what TrainingJob ids look like (uuid4 hex)
ENVS: tuple[Env, ...] = get_args(Env)
STATUS_OF_RUN = {
    "SCHEDULED": "queued",
    "RUNNING": "running",
    "FINISHED": "succeeded",
    "FAILED": "failed",
    "KILLED": "cancelled",
}
RETRY_SECONDS = 10.0


def this_process() -> str:
    """This process, told apart from a later one with the same pid: ``pid@start time``."""
    return f"{os.getpid()}@{psutil.Process().create_time():.3f}"


def process_alive(recorded: str) -> bool:
    """Whether the process recorded by :func:`this_process` still runs (on this host)."""
    pid, _, started = recorded.partition("@")
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except (ValueError, psutil.Error):
        return False


def job_tags(job_id: str, settings: Settings) -> dict[str, str]:
    """The tags that tie a job's run to the job and to the API running it."""
    return {JOB_ID_TAG: job_id, INSTANCE_TAG: settings.api_instance, PROCESS_TAG: this_process()}


def _experiment_ids(client: MlflowClient, settings: Settings) -> list[str]:
    experiments = (client.get_experiment_by_name(settings.experiment_name(env)) for env in ENVS)
    return [experiment.experiment_id for experiment in experiments if experiment is not None]


def _runs(client: MlflowClient, settings: Settings, query: str) -> list[Run]:
    ids = _experiment_ids(client, settings)
    return client.search_runs(ids, filter_string=query) if ids else []


def record_outcome(settings: Settings, registry: Registry, job: JobPublic) -> None:
    """Write a finished job's result or error onto its run(s), for after a restart."""
    try:
        client = registry.client
        for run in _runs(client, settings, f"tags.{JOB_ID_TAG} = '{job.job_id}'"):
            if job.result is not None:
                client.set_tag(run.info.run_id, RESULT_TAG, job.result.model_dump_json())
            elif job.error is not None:
                client.set_tag(run.info.run_id, ERROR_TAG, _short(job.error).model_dump_json())
    except MlflowException as exc:  # MLflow down: the job is still answered from memory
        logger.warning("outcome of training job %s not recorded in MLflow: %s", job.job_id, exc)


def _short(error: JobError) -> JobError:
    return error.model_copy(update={"message": error.message[:2000]})


def find_job(settings: Settings, registry: Registry, job_id: str) -> JobPublic | None:
    """A job that is no longer in memory, from the run it started (None: no such run)."""
    if not JOB_ID.match(job_id):  # also keeps the id out of the filter syntax
        return None
    runs = _runs(registry.client, settings, f"tags.{JOB_ID_TAG} = '{job_id}'")
    if not runs:
        return None
    return job_from_run(job_id, runs[0])


def job_from_run(job_id: str, run: Run) -> JobPublic:
    """The public state of a job, read from its run's status and outcome tags."""
    tags, info = run.data.tags, run.info
    result = TrainPublic.model_validate_json(tags[RESULT_TAG]) if RESULT_TAG in tags else None
    error = JobError.model_validate_json(tags[ERROR_TAG]) if ERROR_TAG in tags else None
    if error is None and STOPPED_TAG in tags:
        code = 409 if info.status == "KILLED" else 500
        error = JobError(status_code=code, type="TrainingStopped", message=tags[STOPPED_TAG])
    # Validated as a request body is: the run's tags are text, the fields are literals.
    return JobPublic.model_validate(
        {
            "job_id": job_id,
            "status": STATUS_OF_RUN.get(info.status, "failed"),
            "model_type": tags.get("model_type", "rf"),
            "created_at": info.start_time / 1000,
            "started_at": info.start_time / 1000,
            "finished_at": info.end_time / 1000 if info.end_time else None,
            "result": result,
            "error": error,
        }
    )


def fail_orphaned_runs(settings: Settings, registry: Registry) -> list[str]:
    """Mark FAILED the RUNNING runs of this API instance whose API process is gone.

    Returns:
        The ids of the runs marked.
    """
    client = registry.client
    query = f"tags.{INSTANCE_TAG} = '{settings.api_instance}' and attributes.status = 'RUNNING'"
    marked = []
    for run in _runs(client, settings, query):
        if process_alive(run.data.tags.get(PROCESS_TAG, "")):
            continue  # another API process of this instance runs it
        reason = (
            f"the API that ran this training ({settings.api_instance}, process "
            f"{run.data.tags.get(PROCESS_TAG, '?')}) stopped before it ended; marked FAILED "
            "when the API started again"
        )
        error = JobError(status_code=500, type="ApiStopped", message=reason)
        client.set_tag(run.info.run_id, STOPPED_TAG, reason)
        client.set_tag(run.info.run_id, ERROR_TAG, error.model_dump_json())
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
        logger.warning("run %s marked FAILED: %s", run.info.run_id, reason)
        marked.append(run.info.run_id)
    return marked


def keep_failing_orphans(settings: Settings, registry: Registry, stop: threading.Event) -> None:
    """:func:`fail_orphaned_runs` once MLflow answers (it may start after the API): retried
    every ``RETRY_SECONDS`` until done or ``stop`` is set. Meant for a background thread."""
    while not stop.is_set():
        try:
            fail_orphaned_runs(settings, registry)
            return
        except (MlflowException, OSError) as exc:
            logger.info("orphaned runs not checked yet (MLflow: %s); retrying", exc)
        except Exception:  # a check that cannot run must never take the API down
            logger.exception("checking orphaned runs failed")
            return
        stop.wait(RETRY_SECONDS)
