"""Training jobs: checked before they start, run one at a time in a worker thread, stoppable.

``POST /train`` turns its body into a :class:`~bikecount.train.TrainRequest` with
:func:`build_train_request` (every check that can fail fast, with the field at fault), then hands
it to :class:`TrainingJobs`. The worker thread keeps the event loop free, so ``/predict`` answers
while a model trains. Each job carries a :class:`~bikecount.stopping.StopToken`: the settings'
time limit, and ``DELETE /train/{job_id}`` (:meth:`TrainingJobs.cancel`); either ends the fit in
progress and frees the slot for the next training. The worker thread, and the process its fits
run in, are at low priority (``TRAINING_NICENESS``): a training never starves ``/predict``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bikecount.api.errors import (
    InvalidFieldError,
    JobFinishedError,
    JobNotFoundError,
    TrainingBusyError,
    describe_error,
    field_at_fault,
)
from bikecount.api.job_runs import job_tags
from bikecount.api.schemas import JobError, JobPublic, JobStatus, TrainPublic, TrainRequestBody
from bikecount.config import DATASET_FILES, Settings
from bikecount.data.io import SUPPORTED_SUFFIXES, DataFileError
from bikecount.isolated_fit import lower_thread_priority
from bikecount.models import HyperparameterError, get_spec
from bikecount.monitoring.metrics import record_training_finished, record_training_started
from bikecount.registry import Registry
from bikecount.stopping import StopToken, TrainingCancelledError, TrainingStoppedError
from bikecount.train import (
    EnvUnavailableError,
    TrainRequest,
    TrainResult,
    train,
    validate_train_request,
)

logger = logging.getLogger(__name__)

MAX_KEPT_JOBS = 50
Recorder = Callable[[JobPublic], None]
Finder = Callable[[str], JobPublic | None]
# How long DELETE /train/{job_id} waits for the training to stop before answering: a fit stops
# at once, a stage talking to MLflow when it is done (bounded by MLflow's request timeouts).
CANCEL_WAIT_SECONDS = 30.0
Trainer = Callable[..., TrainResult]
# Below normal priority: the API (and what else runs on the machine) answers while a model trains.
TRAINING_NICENESS = 10


def build_train_request(
    body: TrainRequestBody, settings: Settings, registry: Registry
) -> TrainRequest:
    """Make the library's request of a body and check it before anything starts: the API's own
    rule (paths stay inside the data folder), then ``train()``'s checks
    (:func:`~bikecount.train.validate_train_request`), each error on the field at fault.

    Raises:
        InvalidFieldError: the field at fault and why (hyperparameters, data source, env).
        RegistryUnavailableError: the MLflow server does not answer (503).
    """
    source = body.data_source
    try:
        if source not in DATASET_FILES:
            source = str(path_inside_data_dir(source, settings))
    except OSError as exc:  # e.g. a name too long
        raise InvalidFieldError("data_source", str(exc)) from None
    request = TrainRequest(
        model_type=body.model_type,
        data_source=source,
        env=body.env or settings.env,
        hyperparams=dict(body.hyperparams),
        test_mode=body.test_mode,
        holdout_from=body.holdout_from,
        refit=body.refit,
    )
    try:
        validate_train_request(request, settings)
    except EnvUnavailableError as exc:
        raise InvalidFieldError("env", f"this server cannot train for it: {exc}") from None
    except HyperparameterError as exc:
        raise InvalidFieldError("hyperparams", str(exc)) from None
    except (DataFileError, OSError, RuntimeError) as exc:  # OSError: e.g. a name too long
        raise InvalidFieldError("data_source", str(exc)) from None
    # Before the slot is taken: without MLflow a training cannot log nor register anything.
    registry.check_reachable()
    return request


def path_inside_data_dir(source: str, settings: Settings) -> Path:
    """The file a ``data_source`` path names, which must lie inside the data folder.

    A relative path is read against the data folder first, then the working directory (as the
    CLI reads it). Links are resolved before the check, so none can lead outside.

    Raises:
        InvalidFieldError: the path leaves the data folder, or is not a record file.
    """
    root = settings.data_dir.resolve()
    given = Path(source)
    candidates = [given] if given.is_absolute() else [root / given, given.resolve()]
    inside = [path.resolve() for path in candidates if path.resolve().is_relative_to(root)]
    if not inside:
        raise InvalidFieldError(
            "data_source", f"{source!r} is outside the data folder; give a file inside it"
        )
    path = next((path for path in inside if path.is_file()), inside[0])
    if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise InvalidFieldError(
            "data_source", f"{source!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return path


@dataclass
class TrainingJob:
    """One training: its request, its state, then its result or the error that ended it."""

    request: TrainRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: JobStatus = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    stage: str | None = None
    result: TrainResult | None = None
    error: JobError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: StopToken = field(default_factory=StopToken)

    def as_public(self) -> JobPublic:
        return JobPublic(
            job_id=self.id,
            status=self.status,
            model_type=get_spec(self.request.model_type).name,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            stage=self.stage,
            result=TrainPublic.from_result(self.id, self.result) if self.result else None,
            error=self.error,
        )


class TrainingJobs:
    """Runs trainings one at a time in a worker thread, and remembers the last few.

    Args:
        settings, registry: passed to ``train()``.
        run: the training function (``bikecount.train.train``; tests pass a stand-in).
        on_success: called with each result, e.g. to make the API re-read its champion.
        record: called with each finished job, to keep it beyond this process (its MLflow run).
        find: a job that is no longer in memory (after a restart), or None.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        run: Trainer = train,
        on_success: Callable[[TrainResult], None] | None = None,
        record: Recorder | None = None,
        find: Finder | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._run = run
        self._on_success = on_success
        self._record = record
        self._find = find
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, TrainingJob] = OrderedDict()
        self._active: TrainingJob | None = None

    def submit(self, request: TrainRequest) -> TrainingJob:
        """Start a training in the background.

        Raises:
            TrainingBusyError: another training is queued or running (with its job id).
        """
        with self._lock:
            if self._active is not None and not self._active.done.is_set():
                raise TrainingBusyError(self._active.id)
            job = TrainingJob(request, stop=StopToken(self.settings.train_time_limit_seconds))
            # The run is tagged with the job and this API: found again after a restart.
            job.request = replace(request, tags={**request.tags, **job_tags(job.id, self.settings)})
            self._active = job
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_KEPT_JOBS:
                self._jobs.popitem(last=False)
        thread = threading.Thread(target=self._execute, args=(job,), name=f"train-{job.id[:8]}")
        thread.daemon = True  # a training never keeps a stopping server alive
        thread.start()
        logger.info("training job %s: %s", job.id, request)
        return job

    def get(self, job_id: str) -> TrainingJob:
        """A job of this process.

        Raises:
            JobNotFoundError: not one of the last ``MAX_KEPT_JOBS`` jobs of this process.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(
                f"no training job {job_id!r} (the last {MAX_KEPT_JOBS} are kept, and jobs "
                "refused before their MLflow run started are not kept past a restart)"
            )
        return job

    def status(self, job_id: str) -> JobPublic:
        """A job's state: from memory, else (the API restarted) from its MLflow run.

        Raises:
            JobNotFoundError: neither knows it.
        """
        try:
            return self.get(job_id).as_public()
        except JobNotFoundError:
            found = self._find(job_id) if self._find is not None else None
            if found is None:
                raise
            return found

    def cancel(self, job_id: str, wait_seconds: float = CANCEL_WAIT_SECONDS) -> TrainingJob:
        """Stop a queued or running training and wait (a while) until it has stopped.

        Its MLflow run is marked KILLED; the champion is untouched. A training already
        registering its model finishes instead (the answer then shows it succeeded).

        Raises:
            JobNotFoundError: no such job.
            JobFinishedError: the job had already finished.
        """
        try:
            job = self.get(job_id)
        except JobNotFoundError:
            known = self._find(job_id) if self._find is not None else None
            if known is None:
                raise
            raise JobFinishedError(
                f"training job {job_id} is {known.status} and not run by this API process"
            ) from None
        if job.done.is_set():
            raise JobFinishedError(f"training job {job_id} has already {job.status}")
        job.stop.cancel(f"cancelled through DELETE /train/{job_id}")
        logger.info("training job %s: cancel requested", job_id)
        job.done.wait(wait_seconds)
        return job

    def running(self) -> TrainingJob | None:
        with self._lock:
            active = self._active
        return active if active is not None and not active.done.is_set() else None

    def _execute(self, job: TrainingJob) -> None:
        lower_thread_priority(TRAINING_NICENESS)  # this thread's; the fit's process follows it
        job.status, job.started_at = "running", time.time()
        record_training_started(job.request.model_type)
        try:
            job.result = self._run(
                job.request,
                self.settings,
                self.registry,
                on_stage=self._stage_setter(job),
                stop=job.stop,
            )
            self._notify(job)
            job.status = "succeeded"
        except TrainingCancelledError as exc:
            logger.warning("training job %s cancelled: %s", job.id, exc)
            job.error = JobError(status_code=409, type=type(exc).__name__, message=str(exc))
            job.status = "cancelled"
        except Exception as exc:
            status_code, message = describe_error(exc)
            if status_code >= 500 and not isinstance(exc, TrainingStoppedError):
                logger.exception("training job %s failed", job.id)
            else:
                logger.warning("training job %s refused: %s", job.id, message)
            field = field_at_fault(exc) if status_code == 422 else None
            job.error = JobError(
                status_code=status_code, type=type(exc).__name__, message=message, field=field
            )
            job.status = "failed"
        finally:
            job.finished_at = time.time()
            record_training_finished(
                job.request.model_type, job.status == "succeeded", job.finished_at - job.started_at
            )
            job.done.set()
        if self._record is not None:  # after done: answering never waits for it
            self._record(job.as_public())

    def _notify(self, job: TrainingJob) -> None:
        # Before the job is marked done, so that a waiting client then sees the new champion.
        if self._on_success is None or job.result is None:
            return
        try:
            self._on_success(job.result)
        except Exception:  # the model is trained and registered whatever happens here
            logger.exception("after training job %s", job.id)

    @staticmethod
    def _stage_setter(job: TrainingJob) -> Callable[[str], None]:
        def set_stage(message: str) -> None:
            job.stage = message
            logger.info("training job %s: %s", job.id[:8], message)

        return set_stage
