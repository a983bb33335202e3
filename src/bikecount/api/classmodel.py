"""The legacy ClassModel API (port 8080): the affluence classifier (``rf_class``) alone.

``POST /predict {records}`` -> ``{predictions: [0|1...], label: ["faible"|"forte"...]}``,
``GET /refresh_model``, ``GET /health``. Start it with
``uvicorn --factory bikecount.api.classmodel:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from bikecount import __version__
from bikecount.api.deps import ApiState, attach_state, configure_mlflow_client, serving_lifespan
from bikecount.api.errors import install_error_handling
from bikecount.api.health_state import with_mlflow_watch
from bikecount.api.instrumentation import champion_recorder, install_metrics
from bikecount.api.model_cache import ModelCache
from bikecount.api.routes import health, legacy
from bikecount.config import Settings
from bikecount.registry import Registry

MODEL_TYPES = (legacy.MODEL_TYPE,)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ClassModel API; settings come from ``BIKECOUNT_*`` variables when not given."""
    settings = settings or Settings()
    configure_mlflow_client(settings)
    app = FastAPI(
        title="bikecount ClassModel API (legacy)",
        version=__version__,
        description="Affluence (faible/forte) of records, from the `rf_class` champion.",
        lifespan=with_mlflow_watch(serving_lifespan),
    )
    registry = Registry(settings)
    cache = ModelCache.from_registry(settings, registry, on_champion=champion_recorder(registry))
    attach_state(app, ApiState(settings, registry, cache, MODEL_TYPES))
    install_error_handling(app, settings.max_records)
    for module in (legacy, health):
        app.include_router(module.router)
    install_metrics(app)
    return app
