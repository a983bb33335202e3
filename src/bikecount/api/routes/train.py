"""``POST /train`` (synchronous by default, or a job to poll), ``GET /train/{job_id}`` and
``DELETE /train/{job_id}`` (cancel)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from bikecount.api.deps import JobsDep, RegistryDep, SettingsDep, WriteAccess
from bikecount.api.errors import ApiError, InvalidFieldError
from bikecount.api.jobs import TrainingJob, build_train_request
from bikecount.api.schemas import ErrorPublic, JobAccepted, JobPublic, TrainPublic, TrainRequestBody

router = APIRouter(tags=["train"])

TRAIN_RESPONSES: dict[int | str, dict[str, object]] = {
    202: {"model": JobAccepted, "description": "Accepted (`wait: false`): poll `status_url`."},
    401: {"model": ErrorPublic, "description": "Missing or wrong X-API-Key."},
    409: {
        "model": ErrorPublic,
        "description": "A training is already running (its job id), or this one was cancelled.",
    },
    422: {
        "model": ErrorPublic,
        "description": "A field is wrong: which one and why (hyperparameters too costly too).",
    },
    503: {"model": ErrorPublic, "description": "MLflow cannot be reached or failed."},
    504: {"model": ErrorPublic, "description": "The training ran past its time limit."},
}


@router.post(
    "/train",
    summary="Train and register a model",
    dependencies=[WriteAccess],
    responses=TRAIN_RESPONSES,
    response_model=TrainPublic | JobAccepted,
)
def train_model(
    body: TrainRequestBody,
    settings: SettingsDep,
    registry: RegistryDep,
    jobs: JobsDep,
    response: Response,
) -> TrainPublic | JobAccepted:
    """Fit, score on a temporal holdout, log to MLflow, register; crown it if it earns it.

    Everything is checked first. One training runs at a time (409 otherwise). With
    ``wait: true`` (the default) the answer comes when it is done; a training runs in a worker
    thread either way, so predictions are served meanwhile.
    """
    job = jobs.submit(build_train_request(body, settings, registry))
    if not body.wait:
        response.status_code = status.HTTP_202_ACCEPTED
        return JobAccepted(job_id=job.id, status="queued", status_url=f"/train/{job.id}")
    job.done.wait()  # this handler runs in the thread pool: the event loop stays free
    return finished_result(job)


def finished_result(job: TrainingJob) -> TrainPublic:
    """The result of a finished job, or its error as the HTTP error it maps to."""
    if job.error is not None:
        message = f"training failed: {job.error.message}"
        if job.error.field is not None:  # a 422 about one field: said where, as validation is
            raise InvalidFieldError(job.error.field, message)
        raise ApiError(message, status_code=job.error.status_code)
    assert job.result is not None
    return TrainPublic.from_result(job.id, job.result)


@router.get(
    "/train/{job_id}", summary="Training job status", responses={404: {"model": ErrorPublic}}
)
def training_job(job_id: str, jobs: JobsDep) -> JobPublic:
    """queued, running (with its current stage), succeeded (with the result), failed or
    cancelled (with the error). A job of an earlier run of the API is read from MLflow."""
    return jobs.status(job_id)


@router.delete(
    "/train/{job_id}",
    summary="Cancel a training job",
    dependencies=[WriteAccess],
    responses={
        401: {"model": ErrorPublic, "description": "Missing or wrong X-API-Key."},
        404: {"model": ErrorPublic, "description": "No such job."},
        409: {"model": ErrorPublic, "description": "The job has already finished."},
    },
)
def cancel_training_job(job_id: str, jobs: JobsDep) -> JobPublic:
    """Stop the training (its MLflow run is marked KILLED, the champion is untouched) and free
    the slot; answers once it has stopped, with the job's state (``cancelled``)."""
    return jobs.cancel(job_id).as_public()
