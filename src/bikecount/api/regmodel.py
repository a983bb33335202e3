"""The RegModel API (port 8000): ``/predict``, ``/train``, ``/health``, ``/models``, docs.

Start it with ``uvicorn --factory bikecount.api.regmodel:create_app``.
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from bikecount import __version__
from bikecount.api.deps import ApiState, attach_state, configure_mlflow_client, serving_lifespan
from bikecount.api.errors import install_error_handling
from bikecount.api.health_state import with_mlflow_watch
from bikecount.api.instrumentation import champion_recorder, install_metrics
from bikecount.api.job_runs import find_job, record_outcome
from bikecount.api.jobs import TrainingJobs
from bikecount.api.model_cache import ModelCache
from bikecount.api.routes import health, models, monitor, predict, train
from bikecount.config import Settings
from bikecount.models import MODEL_TYPES
from bikecount.registry import Registry

DESCRIPTION = """
Predict hourly bike counts at Paris counters, train and register models, and see what is served.

* **/predict**: records (Open Data export headers or snake_case) in, predictions out, in order.
* **/train**: fit, score on a temporal holdout, log to MLflow, register; the champion serves.
* **/models**, **/health**: registered versions; what is loaded and whether MLflow answers.
* **/metrics**: Prometheus metrics (requests, predictions, champions, training, drift).
* **/monitor**: data drift of current data against the reference, and the champion on it.

Write endpoints need the `X-API-Key` header when the server has `BIKECOUNT_API_KEY`.
"""

TAGS = [
    {"name": "predict", "description": "Hourly counts from the served model."},
    {"name": "train", "description": "Train, track and register models."},
    {"name": "models", "description": "The model registry and the serving cache."},
    {"name": "health", "description": "Liveness and dependencies."},
    {"name": "monitor", "description": "Data drift (Evidently) and model decay, logged to MLflow."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the RegModel API; settings come from ``BIKECOUNT_*`` variables when not given."""
    settings = settings or Settings()
    configure_mlflow_client(settings)
    registry = Registry(settings)
    cache = ModelCache.from_registry(settings, registry, on_champion=champion_recorder(registry))
    jobs = TrainingJobs(
        settings,
        registry,
        on_success=lambda result: cache.invalidate(result.model_type),
        record=partial(record_outcome, settings, registry),
        find=partial(find_job, settings, registry),
    )
    app = FastAPI(
        title="bikecount RegModel API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=with_mlflow_watch(serving_lifespan),
    )
    attach_state(app, ApiState(settings, registry, cache, MODEL_TYPES, jobs))
    install_error_handling(app, settings.max_records)
    for module in (predict, train, models, health, monitor):
        app.include_router(module.router)
    install_metrics(app)
    return app
