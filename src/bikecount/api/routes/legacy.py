"""The legacy ClassModel API: ``POST /predict`` and ``GET /refresh_model`` for ``rf_class``."""

from __future__ import annotations

from fastapi import APIRouter

from bikecount.api.deps import CacheDep, SettingsDep, WriteAccess
from bikecount.api.routes.predict import PREDICT_ERRORS, serve_predictions
from bikecount.api.schemas import (
    ErrorPublic,
    LegacyPredictionsPublic,
    LegacyPredictRequest,
    ReloadPublic,
)
from bikecount.models.catalog import ClassifierType

router = APIRouter(tags=["classmodel"])

MODEL_TYPE: ClassifierType = "rf_class"


@router.post("/predict", summary="Classify affluence (faible/forte)", responses=PREDICT_ERRORS)
def predict(
    body: LegacyPredictRequest, cache: CacheDep, settings: SettingsDep
) -> LegacyPredictionsPublic:
    """Classes (1 = forte: above the counter's usual level) and labels, in input order."""
    served, result = serve_predictions(cache, settings, body.records, MODEL_TYPE)
    return LegacyPredictionsPublic(
        predictions=result.values.tolist(),
        label=result.labels or [],
        model_version=served.version,
    )


@router.get(
    "/refresh_model",
    summary="Reload the champion",
    dependencies=[WriteAccess],
    responses={401: {"model": ErrorPublic}, 503: {"model": ErrorPublic}},
)
def refresh_model(cache: CacheDep) -> ReloadPublic:
    """Drop the cached classifier and load the current champion (refused while MLflow is down)."""
    cleared, versions = cache.reload([MODEL_TYPE])
    return ReloadPublic(cleared=cleared, models=versions)
