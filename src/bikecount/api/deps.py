"""What route handlers receive: the settings, the registry, the model cache, the training jobs,
write access.

Each app keeps one :class:`ApiState` on ``app.state``; handlers take its parts through the
``Annotated`` aliases below, so tests and both apps share one wiring.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader

from bikecount.api.errors import ApiError, UnauthorizedError
from bikecount.api.job_runs import keep_failing_orphans
from bikecount.api.jobs import TrainingJobs
from bikecount.api.model_cache import ModelCache
from bikecount.config import Settings
from bikecount.isolated_fit import warm_up
from bikecount.registry import Registry, bound_mlflow_requests, quiet_mlflow

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
# Within the grace `bikecount up` gives a stopping service (10 s).
SHUTDOWN_CANCEL_SECONDS = 5.0


@dataclass
class ApiState:
    """Everything one API process holds: settings, cached models, and (RegModel) training jobs."""

    settings: Settings
    registry: Registry
    cache: ModelCache
    model_types: tuple[str, ...]
    jobs: TrainingJobs | None = None
    started_at: float = field(default_factory=time.monotonic)

    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self.started_at, 3)


def get_state(request: Request) -> ApiState:
    return request.app.state.bikecount


# The dependencies below only read the app's state: ``async def``, so that FastAPI calls them
# on the event loop. It runs a plain ``def`` dependency on a worker thread, one hop each per
# request (``fastapi.dependencies.utils.solve_dependencies``), which costs a small request
# more than its own work, and far more on a busy machine.
async def get_state_dependency(request: Request) -> ApiState:
    return get_state(request)


async def get_settings(request: Request) -> Settings:
    return get_state(request).settings


async def get_registry(request: Request) -> Registry:
    return get_state(request).registry


async def get_cache(request: Request) -> ModelCache:
    return get_state(request).cache


async def get_jobs(request: Request) -> TrainingJobs:
    jobs = get_state(request).jobs
    assert jobs is not None, "training routes need an app built with training jobs"
    return jobs


StateDep = Annotated[ApiState, Depends(get_state_dependency)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
CacheDep = Annotated[ModelCache, Depends(get_cache)]
JobsDep = Annotated[TrainingJobs, Depends(get_jobs)]

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Needed by write endpoints when the server has BIKECOUNT_API_KEY (always in prod).",
)


async def require_api_key(
    settings: SettingsDep, given: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Let a write through when no key is configured, or when ``X-API-Key`` matches it."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    # Constant-time comparison: the time taken says nothing about how much of the key matched.
    if given is None or not secrets.compare_digest(given.encode(), expected):
        raise UnauthorizedError(
            f"missing or invalid {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )


WriteAccess = Depends(require_api_key)


def configure_logging() -> None:
    """INFO logs for the server process, unless the host application set logging up already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    quiet_mlflow()
    # One line per MLflow health probe would drown the server log.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def configure_mlflow_client(settings: Settings) -> None:
    """MLflow's client as a server process needs it: requests bounded, no download progress
    bars (they are for terminals, not for a server's log). MLflow reads both from the
    environment, which only an app's creation writes: a server's threads never start before
    it (see :func:`~bikecount.registry.bound_mlflow_requests`)."""
    bound_mlflow_requests(settings)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@asynccontextmanager
async def serving_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Point MLflow's run logging at the registry, and load existing champions in the background.

    Lookups and loads go through the state's registry; the trainings ``/train`` runs log
    through MLflow's fluent API, which ``use_for_runs`` points at the same server.
    """
    state: ApiState = app.state.bikecount
    configure_logging()
    state.registry.use_for_runs()
    preload = threading.Thread(
        target=state.cache.preload, args=(state.model_types,), name="preload", daemon=True
    )
    preload.start()
    stopping = threading.Event()
    if state.jobs is not None:
        # The fork server that trainings fit in takes seconds to start: start it now.
        threading.Thread(target=warm_up, name="fit-server", daemon=True).start()
        # Runs left RUNNING by an earlier process of this API, killed mid-training.
        orphans = threading.Thread(
            target=keep_failing_orphans,
            args=(state.settings, state.registry, stopping),
            name="orphaned-runs",
            daemon=True,
        )
        orphans.start()
    yield
    stopping.set()
    if state.jobs is not None and (job := state.jobs.running()) is not None:
        # Cancelled, so that its run is marked KILLED; if this process is killed first, the
        # next start marks the run FAILED (job_runs.fail_orphaned_runs).
        logger.warning("stopping while training job %s runs: cancelling it", job.id)
        with suppress(ApiError):
            state.jobs.cancel(job.id, wait_seconds=SHUTDOWN_CANCEL_SECONDS)


def attach_state(app: FastAPI, state: ApiState) -> None:
    app.state.bikecount = state
