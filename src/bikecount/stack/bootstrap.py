"""First start on an empty machine: make the data sets, then train a first model of every type.

Runs once the MLflow server is up and before the APIs start, so that ``/predict`` answers at once.
Later starts find the data and the champions and do nothing. Once the stack is up,
:class:`BackgroundWork` fills an empty pipeline store and replaces the fast first models by full
ones, one at a time at low priority.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from bikecount.config import DATASET_FILES, Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import prepare_datasets
from bikecount.models import MODEL_TYPES
from bikecount.pipeline.ingest import SYNTHETIC, ingest
from bikecount.pipeline.predict import predict_day
from bikecount.pipeline.store import last_day, open_store
from bikecount.records import PARIS_TZ, TIMESTAMP, parse_timestamps
from bikecount.registry import Registry, RegistryUnavailableError
from bikecount.stack.processes import StackError
from bikecount.train import TrainRequest, TrainResult, train

logger = logging.getLogger(__name__)


def _log_message(message: str) -> None:
    logger.info(message)


def _ignore(*args: object) -> None:
    return None


def _log_trained(model_type: str, result: TrainResult | None, error: Exception | None) -> None:
    if error is not None:
        logger.warning("first %s model failed: %s", model_type, error)
    elif result is not None:
        logger.info("first %s model: version %d", model_type, result.version)


class BootstrapError(StackError):
    """The first-start work could not be done (data sets, or asking MLflow what is registered)."""


@dataclass
class BootstrapHooks:
    """Callbacks through which the bootstrap reports progress (the CLI draws them).

    Attributes:
        on_message: a sentence about what was found or done.
        on_training: the model types about to be trained, once, before the first one.
        on_stage: (model type, stage) while one trains.
        on_trained: (model type, result or None, error or None) when one is done.
        chatter: a context manager around each training, for what MLflow prints.
    """

    on_message: Callable[[str], None] = _log_message
    on_training: Callable[[Sequence[str]], None] = _ignore
    on_stage: Callable[[str, str], None] = _ignore
    on_trained: Callable[[str, TrainResult | None, Exception | None], None] = _log_trained
    # Wraps each first training: the CLI sends MLflow's prints ("🏃 View run ...") to a log.
    chatter: Callable[[], AbstractContextManager[object]] = nullcontext


@dataclass
class BootstrapReport:
    """What the bootstrap did: data made or not, models trained, failed and reused."""

    data_prepared: bool = False
    trained: dict[str, TrainResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


def data_missing(settings: Settings) -> bool:
    """Whether any of the three data sets is missing."""
    return not all(settings.dataset_path(name).is_file() for name in DATASET_FILES)


def server_settings(settings: Settings, tracking_uri: str) -> Settings:
    """The stack's settings, pointed at its MLflow server."""
    return settings.model_copy(update={"mlflow_tracking_uri": tracking_uri})


def types_without_champion(registry: Registry, model_types: Sequence[str]) -> list[str]:
    """The model types with no champion in ``registry``.

    Raises:
        RegistryUnavailableError: MLflow could not be asked (never read as "no champion").
    """
    return [t for t in model_types if registry.champion(t) is None]


def bootstrap(
    settings: Settings,
    tracking_uri: str,
    hooks: BootstrapHooks | None = None,
    model_types: Sequence[str] = MODEL_TYPES,
) -> BootstrapReport:
    """Make missing data sets and train first models (test mode) for types without a champion.

    A model that fails to train is reported, not raised: the stack still starts, and that type
    answers "no model" until one is trained.

    Raises:
        BootstrapError: the data sets could not be made, or the registry could not be read.

    Args:
        settings: the stack's settings (data folder, seed, env).
        tracking_uri: the running MLflow server, where models are looked up and registered.
        hooks: progress callbacks.
        model_types: the types that should have a model.
    """
    hooks = hooks or BootstrapHooks()
    report = BootstrapReport()
    if data_missing(settings):
        hooks.on_message(f"no data sets in {settings.data_dir}/: preparing them")
        try:
            prepare_datasets(settings, on_stage=hooks.on_message)
        except (OSError, ValueError) as exc:
            raise BootstrapError(f"could not prepare the data sets: {exc}") from exc
        report.data_prepared = True
    on_server = server_settings(settings, tracking_uri)
    try:
        missing = types_without_champion(Registry(on_server), model_types)
    except RegistryUnavailableError as exc:  # MLflow answered /health but not the registry
        raise BootstrapError(f"could not list the models registered in MLflow: {exc}") from exc
    report.reused = [t for t in model_types if t not in missing]
    if report.reused:
        hooks.on_message(f"models found for {', '.join(report.reused)}: reusing them")
    if not missing:
        return report
    hooks.on_message(f"no model registered for {', '.join(missing)}: training first models")
    hooks.on_training(missing)
    for model_type in missing:
        _train_first(model_type, on_server, hooks, report)
    return report


def _train_first(
    model_type: str, settings: Settings, hooks: BootstrapHooks, report: BootstrapReport
) -> None:
    # Fast settings on the test sample: seconds per model, good enough to answer /predict.
    request = TrainRequest(
        model_type=model_type, data_source="reference", env=settings.env, test_mode=True
    )
    try:
        with hooks.chatter():
            result = train(
                request,
                settings,
                Registry(settings),
                on_stage=lambda stage: hooks.on_stage(model_type, stage),
            )
    except Exception as exc:  # one broken type must not keep the whole stack down
        logger.debug("first %s model failed", model_type, exc_info=True)
        report.failed[model_type] = str(exc)
        hooks.on_trained(model_type, None, exc)
        return
    report.trained[model_type] = result
    hooks.on_trained(model_type, result, None)


# --- After the first start: a filled store and full models, in the background ---------------

# Below normal priority: the APIs and the dashboard stay responsive while a full model trains.
FULL_TRAINING_NICENESS = 10
FULL_TRAINING_LOG = "full-models.log"
# How long a new champion may take to be served (the APIs re-check every model_check_seconds).
TAKEOVER_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class FullModel:
    """A full model trained in the background: its version and whether it became champion."""

    model_type: str
    version: int
    champion: bool
    reason: str
    metrics: dict[str, float]


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
    settings: Settings, tracking_uri: str, model_type: str, log_path: Path, stop: threading.Event
) -> FullModel | None:
    """Train a full model of ``model_type`` in a child process at low priority.

    The child is ``bikecount train`` on the reference data, in a session of its own (stopped with
    the stack) and niced, its output appended to ``log_path``. Returns None when stopped.

    Raises:
        RuntimeError: the training failed (the champion is left as it was).
    """
    command = [sys.executable, "-m", "bikecount", "train", "--model", model_type, "--json"]
    env = {
        **os.environ,
        "BIKECOUNT_MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BIKECOUNT_ENV": settings.env,
        "BIKECOUNT_MLFLOW_PREFIX": settings.mlflow_prefix,
        "BIKECOUNT_DATA_DIR": str(settings.data_dir.resolve()),
    }
    # The answer goes to a file, not a pipe: a pipe read only at the end would hold a child
    # that writes more than its buffer.
    with log_path.open("a", encoding="utf-8") as log, tempfile.TemporaryFile() as answer:
        log.write(f"--- {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=answer,
            stderr=log,
            start_new_session=True,
        )
        try:
            # Lowered from here (preexec_fn is unsafe in a process with threads); what the child
            # starts later inherits it.
            niceness = max(os.getpriority(os.PRIO_PROCESS, 0), FULL_TRAINING_NICENESS)
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, process.pid, niceness)
            while process.poll() is None:
                if stop.wait(0.5):
                    _stop_group(process)
                    return None
            answer.seek(0)
            output = answer.read().decode("utf-8", errors="replace")
        finally:
            if process.poll() is None:
                _stop_group(process)
        log.write(output)
    if process.returncode != 0:
        raise RuntimeError(f"bikecount train --model {model_type} failed (see {log_path})")
    result = json.loads(output[output.index("{") :])
    return FullModel(
        model_type,
        int(result["version"]),
        bool(result["champion"]),
        str(result.get("champion_reason", "")),
        {k: float(v) for k, v in result.get("metrics", {}).items() if v is not None},
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


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
    2. every type whose champion is a test-mode first model gets a full model, one at a time, at
       low priority; a full model becomes champion (a test-mode champion always gives way) and
       the APIs take it over without a restart;
    3. once the pipeline's type is served by its full model, the stored days are forecast again
       by it (the first model's forecasts stay, to compare).

    Args:
        settings: the stack's settings.
        tracking_uri: the stack's MLflow server.
        api_url: the stack's RegModel API.
        on_message: a sentence for the console, from the background thread.
        model_types: the types that may get a full model.
    """

    def __init__(
        self,
        settings: Settings,
        tracking_uri: str,
        api_url: str,
        on_message: Callable[[str], None] = _log_message,
        model_types: Sequence[str] = MODEL_TYPES,
    ) -> None:
        self.settings = settings
        self.tracking_uri = tracking_uri
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

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the work (a training under way is stopped; its champion is left as it was)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # the stack keeps running: this work is a convenience
            logger.debug("first-start work failed", exc_info=True)
            self.on_message(f"background work stopped: {exc}")

    def _work(self) -> None:
        filled: list[date] = []
        if self.settings.env == "dev" and store_is_empty(self.settings):
            filled = fill_store(self.settings, self.api_url, self.on_message)
        registry = Registry(server_settings(self.settings, self.tracking_uri))
        pending = types_with_test_mode_champion(registry, self._ordered_types())
        if not pending:
            return
        log_path = self.settings.logs_dir / FULL_TRAINING_LOG
        self.on_message(
            f"training full models in the background, one at a time at low priority: "
            f"{', '.join(pending)} (log: {log_path}); the first models serve meanwhile"
        )
        for model_type in pending:
            if self.stop_event.is_set():
                return
            self._train_one(model_type, log_path, filled)
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

    def _train_one(self, model_type: str, log_path: Path, filled: list[date]) -> None:
        self.on_message(f"full {model_type} model: training")
        try:
            model = train_full_model(
                self.settings, self.tracking_uri, model_type, log_path, self.stop_event
            )
        except (RuntimeError, ValueError, OSError) as exc:
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
            if forecast_until_served(
                self.settings,
                self.api_url,
                filled,
                model.version,
                self.stop_event,
                TAKEOVER_TIMEOUT_SECONDS,
            ):
                self.on_message(
                    f"stored days forecast again by {model_type} v{model.version} "
                    f"({filled[0]} to {filled[-1]}), now served by the API"
                )
