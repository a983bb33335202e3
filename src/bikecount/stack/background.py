"""After the first start, in the background: a filled pipeline store and full models.

Once ``bikecount up`` has started MLflow and the APIs, :class:`BackgroundWork` fills an empty
pipeline store and replaces the fast first models by full ones, one at a time. Each full model is
a training job of the RegModel API the stack started (``POST /train`` with ``"wait": false``),
polled until it ends and cancelled (``DELETE /train/{job_id}``) when the stack stops. The API
runs its trainings at low priority (:data:`bikecount.api.jobs.TRAINING_NICENESS`), so the first
models keep serving meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.models import MODEL_TYPES
from bikecount.pipeline import PipelineError, call_api
from bikecount.pipeline.ingest import SYNTHETIC, ingest
from bikecount.pipeline.predict import predict_day
from bikecount.pipeline.store import last_day
from bikecount.pipeline.store_engine import open_store
from bikecount.records import PARIS_TZ, TIMESTAMP, parse_timestamps
from bikecount.registry import Registry
from bikecount.stack.services import REGMODEL

logger = logging.getLogger(__name__)

# How often a training job is asked for its state, and how long each call may take (POST /train
# checks the data file and MLflow before it answers; DELETE answers once the training stopped).
POLL_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 60.0
# A job ends at the API's time limit (train_time_limit_seconds); this long after it, it is given
# up on (and cancelled).
JOB_GRACE_SECONDS = 120.0
# The API down, or its MLflow (503): the stack restarts a crashed service, so the API is asked
# again, for this long.
UNAVAILABLE_SECONDS = 300.0
UNAVAILABLE = (503, None)  # the status of a PipelineError when MLflow or the API is down
# How long a new champion may take to be served (the APIs re-check every model_check_seconds).
TAKEOVER_TIMEOUT_SECONDS = 120.0
FINISHED = ("succeeded", "failed", "cancelled")


def _log_message(message: str) -> None:
    logger.info(message)


class FullTrainingError(RuntimeError):
    """A full model could not be trained: the API refused the job, or the job failed."""


@dataclass(frozen=True)
class FullModel:
    """A full model trained in the background: its version and whether it became champion."""

    model_type: str
    version: int
    champion: bool
    reason: str
    metrics: dict[str, float]
    job_id: str = ""


def types_with_test_mode_champion(registry: Registry, model_types: Sequence[str]) -> list[str]:
    """The types whose champion is a test-mode (first, fast) model: those a full model replaces."""
    found = []
    for model_type in model_types:
        champion = next((v for v in registry.list_versions(model_type) if v.champion), None)
        if champion is not None and champion.test_mode:
            found.append(model_type)
    return found


def store_is_empty(settings: Settings) -> bool:
    return last_day(open_store(settings.pipeline_db_url)) is None


def recent_days(settings: Settings) -> tuple[list[date], date]:
    """The last ``pipeline_recent_days`` days of the current data set, and the day after them."""
    stamps = read_records(settings.dataset_path("current"))[TIMESTAMP]
    last = parse_timestamps(stamps).dt.tz_convert(PARIS_TZ).max().date()
    first = last - timedelta(days=settings.pipeline_recent_days - 1)
    days = [first + timedelta(days=i) for i in range(settings.pipeline_recent_days)]
    return days, last + timedelta(days=1)


def fill_store(settings: Settings, api_url: str, on_message: Callable[[str], None]) -> list[date]:
    """Fill an empty pipeline store as the daily loop would have: the recent days' counts from
    the generator, each one's forecast by the served champion (scored at once), and a forecast
    of the coming day. Returns the days forecast."""
    days, coming = recent_days(settings)
    on_message(f"filling the pipeline store: generated counts of {days[0]} to {days[-1]}")
    for day in days:
        ingest(settings, day, SYNTHETIC)
    forecast_days(settings, api_url, [*days, coming])
    on_message(
        f"pipeline store filled: {len(days)} days of counts, their forecasts and a forecast of "
        f"{coming} ({settings.pipeline_model_type})"
    )
    return [*days, coming]


def forecast_days(settings: Settings, api_url: str, days: Sequence[date]) -> int:
    """Forecast ``days`` through the API (``predict_day``); the version that served them."""
    version = 0
    for day in days:
        version = predict_day(settings, day, api_url=api_url).versions[-1]
    return version


def train_full_model(
    settings: Settings,
    api_url: str,
    model_type: str,
    stop: threading.Event,
    on_message: Callable[[str], None] = _log_message,
) -> FullModel | None:
    """Train a full model of ``model_type`` on the reference data as a job of the RegModel API
    at ``api_url``, and wait for it. Returns None when ``stop`` is set first (the job is then
    cancelled, its champion left as it was).

    While another training holds the API's one slot, the job waits for it (``on_message`` says
    so once). The wait is bounded by the settings' time limit, past which the API ends a job.

    Raises:
        FullTrainingError: the API refused the job or the job failed (the champion is unchanged).
    """
    deadline = time.monotonic() + settings.train_time_limit_seconds + JOB_GRACE_SECONDS
    job_id = submit_training(settings, api_url, model_type, stop, deadline, on_message)
    if job_id is None:
        return None
    job = wait_for_job(settings, api_url, job_id, stop, deadline)
    if job is None:
        return None
    result = job.get("result")
    if job["status"] != "succeeded" or result is None:
        error = job.get("error") or {}
        raise FullTrainingError(
            f"training job {job_id} {job['status']}: {error.get('message', 'no reason given')}"
        )
    return FullModel(
        model_type,
        int(result["model_version"]),
        bool(result["champion"]),
        str(result.get("champion_reason", "")),
        {k: float(v) for k, v in result.get("metrics", {}).items() if v is not None},
        job_id,
    )


def submit_training(
    settings: Settings,
    api_url: str,
    model_type: str,
    stop: threading.Event,
    deadline: float,
    on_message: Callable[[str], None],
) -> str | None:
    """``POST /train`` of a full model, without waiting; its job id (None: stopped first).

    Asked again while another training holds the API's one slot (409, until ``deadline``), or
    while the API or its MLflow are down (for ``UNAVAILABLE_SECONDS``); ``on_message`` says so
    once.

    Raises:
        FullTrainingError: the API refused it, or could not take it in time.
    """
    payload = {"model_type": model_type, "data_source": "reference", "env": settings.env}
    unavailable_until, told = time.monotonic() + UNAVAILABLE_SECONDS, False
    while not stop.is_set():
        try:
            accepted = call_api(
                settings, api_url, "/train", {**payload, "wait": False}, REQUEST_TIMEOUT_SECONDS
            )
            return str(accepted["job_id"])
        except PipelineError as exc:
            limit = deadline if exc.status_code == 409 else unavailable_until
            if exc.status_code not in (409, *UNAVAILABLE) or time.monotonic() > limit:
                raise FullTrainingError(str(exc)) from exc
            if not told:
                on_message(f"full {model_type} model: waiting for the API ({exc})")
                told = True
        stop.wait(POLL_SECONDS)
    return None


def wait_for_job(
    settings: Settings, api_url: str, job_id: str, stop: threading.Event, deadline: float
) -> dict[str, Any] | None:
    """Poll ``GET /train/{job_id}`` until the job has finished; its last state. When ``stop``
    is set first, the job is cancelled and None returned.

    An API that does not answer (restarted by the stack), or whose MLflow is down, is asked again
    for ``UNAVAILABLE_SECONDS``.

    Raises:
        FullTrainingError: the API does not know the job, stayed down, or the job ran past
        ``deadline``.
    """
    stage, answered = None, time.monotonic()
    while not stop.wait(POLL_SECONDS):
        try:
            job = call_api(
                settings, api_url, f"/train/{job_id}", None, REQUEST_TIMEOUT_SECONDS, "GET"
            )
            answered = time.monotonic()
        except PipelineError as exc:
            down_too_long = time.monotonic() > answered + UNAVAILABLE_SECONDS
            if exc.status_code not in UNAVAILABLE or down_too_long:
                raise FullTrainingError(str(exc)) from exc
            logger.info("training job %s: %s; asking again", job_id, exc)
            job = {"status": "unknown"}
        if job["status"] in FINISHED:
            return job
        if job.get("stage") != stage:
            stage = job.get("stage")
            logger.info("training job %s (%s): %s", job_id, job.get("model_type"), stage)
        if time.monotonic() > deadline:
            cancel_job(settings, api_url, job_id)
            raise FullTrainingError(f"training job {job_id} did not finish in time; cancelled")
    cancel_job(settings, api_url, job_id)
    return None


def cancel_job(settings: Settings, api_url: str, job_id: str) -> None:
    """``DELETE /train/{job_id}``: the training stops, its run is marked KILLED and the champion
    is untouched. A job that already ended, or an API already gone, is only logged: an API that
    stops mid-training marks the run FAILED when it starts again."""
    try:
        call_api(settings, api_url, f"/train/{job_id}", None, REQUEST_TIMEOUT_SECONDS, "DELETE")
    except PipelineError as exc:
        logger.info("training job %s not cancelled: %s", job_id, exc)
        return
    logger.info("training job %s cancelled", job_id)


def forecast_until_served(
    settings: Settings,
    api_url: str,
    days: Sequence[date],
    version: int,
    stop: threading.Event,
    timeout: float,
) -> bool:
    """Forecast ``days`` again once the API serves ``version`` of the pipeline's model type.

    The API takes a new champion over on its next request after ``model_check_seconds``; the
    coming day is asked until that version answers, then the other days follow.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if forecast_days(settings, api_url, days[-1:]) == version:
            forecast_days(settings, api_url, days[:-1])
            return True
        stop.wait(2.0)
    return False


class BackgroundWork:
    """What a first start does once the stack is up, in one background thread, in order:

    1. an empty pipeline store is filled (generated recent days, their forecasts, the coming
       day's), so that every dashboard page has content;
    2. every type whose champion is a test-mode first model gets a full model, one at a time, as
       a training job of the API (at low priority); a full model becomes champion (a test-mode
       champion always gives way) and the APIs take it over without a restart;
    3. once the pipeline's type is served by its full model, the stored days are forecast again
       by it (the first model's forecasts stay, to compare).

    Args:
        settings: the stack's settings (its API key, env and data).
        registry: the stack's MLflow server, where test-mode champions are found.
        api_url: the stack's RegModel API, which trains the full models.
        on_message: a sentence for the console, from the background thread.
        model_types: the types that may get a full model.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        api_url: str,
        on_message: Callable[[str], None] = _log_message,
        model_types: Sequence[str] = MODEL_TYPES,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.api_url = api_url
        self.on_message = on_message
        self.model_types = list(model_types)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.trained: list[FullModel] = []
        self.failed: dict[str, str] = {}

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="first-start", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the work: a training under way is cancelled through the API (its champion is
        left as it was).

        The wait is short: the services stop next, and the API cancels its own running job
        when it stops, so a cancel request slowed by a busy machine must not hold the stack up.
        """
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # the stack keeps running: this work is a convenience
            logger.debug("first-start work failed", exc_info=True)
            if not self.stop_event.is_set():  # once stopping, the services going away is expected
                self.on_message(f"background work stopped: {exc}")

    def _work(self) -> None:
        filled: list[date] = []
        if self.settings.env == "dev" and store_is_empty(self.settings):
            filled = fill_store(self.settings, self.api_url, self.on_message)
        pending = types_with_test_mode_champion(self.registry, self._ordered_types())
        if not pending:
            return
        log_path = self.settings.logs_dir / f"{REGMODEL}.log"
        self.on_message(
            f"training full models in the background, one at a time at low priority: "
            f"{', '.join(pending)} (training jobs of the API, log: {log_path}); the first "
            "models serve meanwhile"
        )
        for model_type in pending:
            if self.stop_event.is_set():
                return
            self._train_one(model_type, filled)
        if self.trained and not self.failed:
            self.on_message("every full model is trained")
        elif self.trained:  # a failure was told when it happened; the summary must not hide it
            self.on_message(
                f"full models trained: {', '.join(m.model_type for m in self.trained)}; "
                f"failed: {', '.join(self.failed)} (their first models stay; log: {log_path})"
            )

    def _ordered_types(self) -> list[str]:
        # The pipeline's type first: the store's forecasts and the dashboard depend on it.
        first = self.settings.pipeline_model_type
        if first not in self.model_types:
            return self.model_types
        return [first, *(t for t in self.model_types if t != first)]

    def _train_one(self, model_type: str, filled: list[date]) -> None:
        self.on_message(f"full {model_type} model: training")
        try:
            model = train_full_model(
                self.settings, self.api_url, model_type, self.stop_event, self.on_message
            )
        except FullTrainingError as exc:
            self.failed[model_type] = str(exc)
            self.on_message(f"full {model_type} model failed: {exc}; the first model stays")
            return
        if model is None:
            return
        self.trained.append(model)
        metrics = ", ".join(f"{k} {v:.3g}" for k, v in list(model.metrics.items())[:2])
        if not model.champion:
            self.on_message(
                f"full {model_type} model v{model.version} registered ({metrics}) but not "
                f"champion: {model.reason}"
            )
            return
        self.on_message(
            f"full {model_type} model v{model.version} is champion ({metrics}): the APIs take "
            f"it over within {self.settings.model_check_seconds:.0f} s, no restart"
        )
        if filled and model_type == self.settings.pipeline_model_type:
            self._forecast_again(model, filled)

    def _forecast_again(self, model: FullModel, filled: list[date]) -> None:
        if forecast_until_served(
            self.settings,
            self.api_url,
            filled,
            model.version,
            self.stop_event,
            TAKEOVER_TIMEOUT_SECONDS,
        ):
            self.on_message(
                f"stored days forecast again by {model.model_type} v{model.version} "
                f"({filled[0]} to {filled[-1]}), now served by the API"
            )
