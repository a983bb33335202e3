"""``GET /health``: liveness, MLflow reachability, the model versions served, uptime."""

from __future__ import annotations

from fastapi import APIRouter

from bikecount import __version__
from bikecount.api.deps import StateDep
from bikecount.api.errors import redact
from bikecount.api.schemas import HealthPublic, MlflowStatus

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check")
def health(state: StateDep) -> HealthPublic:
    """``ok`` when MLflow answers; ``degraded`` when it does not (cached models still serve)."""
    reachable = state.cache.check_mlflow()
    return HealthPublic(
        status="ok" if reachable else "degraded",
        mlflow=MlflowStatus(uri=redact(state.settings.tracking_uri), reachable=reachable),
        models=state.cache.champion_versions(state.model_types),
        uptime_seconds=state.uptime_seconds(),
        version=__version__,
    )
