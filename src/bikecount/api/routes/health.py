"""``GET /health``: liveness, MLflow reachability, the model versions served, uptime.

Cheap enough for a load balancer to call often: nothing here waits on MLflow.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from bikecount import __version__
from bikecount.api.deps import get_state
from bikecount.api.errors import redact
from bikecount.api.schemas import HealthPublic, MlflowStatus

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check")
async def health(request: Request) -> HealthPublic:
    """``ok`` when MLflow answers; ``degraded`` when it does not (cached models still serve).

    MLflow's state is the one last probed in the background (:mod:`bikecount.api.health_state`):
    answering never waits on MLflow, nor on a worker thread: the handler runs on the event loop
    and reads the state itself (a dependency function would run on a worker thread).
    """
    state = get_state(request)
    reachable = state.cache.mlflow_reachable
    if reachable is None:  # never probed: an app started without its lifespan (some tests)
        reachable = await run_in_threadpool(state.cache.check_mlflow)
    return HealthPublic(
        status="ok" if reachable else "degraded",
        mlflow=MlflowStatus(uri=redact(state.settings.tracking_uri), reachable=reachable),
        models=state.cache.champion_versions(state.model_types),
        uptime_seconds=state.uptime_seconds(),
        version=__version__,
    )
