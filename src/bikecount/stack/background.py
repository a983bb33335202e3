"""After the first start, in the background: a filled pipeline store and full models.

Once ``bikecount up`` has started MLflow and the APIs, :class:`BackgroundWork` fills an empty
pipeline store and replaces the fast first models by full ones, one at a time at low priority.
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
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.models import MODEL_TYPES
from bikecount.pipeline.ingest import SYNTHETIC, ingest
from bikecount.pipeline.predict import predict_day
from bikecount.pipeline.store import last_day, open_store
from bikecount.records import PARIS_TZ, TIMESTAMP, parse_timestamps
from bikecount.registry import Registry
from bikecount.stack.first_start import server_settings

logger = logging.getLogger(__name__)


def _log_message(message: str) -> None:
    logger.info(message)


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
