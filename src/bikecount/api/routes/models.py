"""``GET /models`` (registered versions, metrics, champions) and ``POST /models/reload``."""

from __future__ import annotations

from fastapi import APIRouter

from bikecount.api.deps import RegistryDep, StateDep, WriteAccess
from bikecount.api.schemas import ErrorPublic, ModelsPublic, ModelType, ReloadPublic, VersionPublic

router = APIRouter(tags=["models"])


@router.get("/models", summary="Registered versions", responses={503: {"model": ErrorPublic}})
def registered_models(
    state: StateDep, registry: RegistryDep, model_type: ModelType | None = None
) -> ModelsPublic:
    """Every registered version (of one type, or all), newest first, with holdout metrics."""
    registry.check_reachable()  # at once, before MLflow's client retries for minutes
    types = (model_type,) if model_type else state.model_types
    versions = [
        VersionPublic.model_validate(v.as_dict()) for t in types for v in registry.list_versions(t)
    ]
    return ModelsPublic(models=versions, count=len(versions))


@router.post(
    "/models/reload",
    summary="Reload champions",
    dependencies=[WriteAccess],
    responses={401: {"model": ErrorPublic}, 503: {"model": ErrorPublic}},
)
def reload_models(state: StateDep, model_type: ModelType | None = None) -> ReloadPublic:
    """Empty the model cache (of one type, or all) and load the champions again."""
    types = (model_type,) if model_type else state.model_types
    cleared, versions = state.cache.reload(types)
    return ReloadPublic(cleared=cleared, models=versions)
