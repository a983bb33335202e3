"""``POST /predict``: records in, predictions out in the same order, from the served version."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from bikecount.api.deps import CacheDep, SettingsDep
from bikecount.api.errors import ApiError, InvalidFieldError, TooManyRecordsError
from bikecount.api.json_body import QuickJsonRoute
from bikecount.api.model_cache import ModelCache, ServedModel
from bikecount.api.quick_records import quick_frame
from bikecount.api.records_body import records_frame
from bikecount.api.schemas import ErrorPublic, PredictionsPublic, PredictRequest
from bikecount.config import Settings
from bikecount.evaluate import CLASSIFICATION_METRICS, REGRESSION_METRICS
from bikecount.inference import Predictions, predict_records
from bikecount.intervals import NoCalibrationError, model_bounds
from bikecount.models import get_spec
from bikecount.monitoring.metrics import record_prediction
from bikecount.records import require_valid

logger = logging.getLogger(__name__)

# The body is parsed by orjson where it gives the standard library's values (json_body).
router = APIRouter(tags=["predict"], route_class=QuickJsonRoute)

# At most this many records are predicted on the event loop, when their model is loaded: a few
# milliseconds of work, less than handing the request to a worker thread and back costs on a
# busy machine. Bigger requests run on a worker thread, so that the loop keeps answering.
INLINE_RECORDS = 64
TASK_METRICS = {"regression": REGRESSION_METRICS, "classification": CLASSIFICATION_METRICS}
PREDICT_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorPublic, "description": "No champion (or no version with that metric)."},
    409: {"model": ErrorPublic, "description": "An interval asked of a version without one."},
    413: {"model": ErrorPublic, "description": "More records than the server accepts."},
    422: {"model": ErrorPublic, "description": "Invalid records: each row, column and reason."},
    503: {"model": ErrorPublic, "description": "MLflow unreachable and no model cached."},
}


def serve_predictions(
    cache: ModelCache,
    settings: Settings,
    records: Sequence[Mapping[str, object]],
    model_type: str,
    metric: str | None = None,
    loaded: ServedModel | None = None,
) -> tuple[ServedModel, Predictions]:
    """Validate records, pick the model, predict the whole batch at once (input order kept).

    Records are checked before any model is loaded, so bad input is a 4xx even with no model.
    ``loaded``: the model to serve, already taken from the cache (see :meth:`ModelCache.peek`).

    Raises:
        TooManyRecordsError, InvalidFieldError, RecordError, NoModelError, ModelUnavailableError.
    """
    if len(records) > settings.max_records:
        raise TooManyRecordsError(
            f"{len(records):,} records; at most {settings.max_records:,} per request"
        )
    task = get_spec(model_type).task
    if metric is not None and metric not in TASK_METRICS[task]:
        choices = ", ".join(TASK_METRICS[task])
        raise InvalidFieldError("metric", f"{model_type} is scored by {choices}; not {metric}")
    frame = valid_frame(records)
    served = loaded if loaded is not None else cache.get(model_type, metric)
    result = predict_records(served.model, served.task, frame)
    if not np.isfinite(result.values).all():
        logger.error("%s v%d returned non-finite predictions", model_type, served.version)
        raise ApiError(f"{model_type} v{served.version} returned non-finite predictions")
    record_prediction(model_type, len(result.values))
    return served, result


def valid_frame(records: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """The canonical frame of a request's records, every one valid: read one by one when they
    are few and plain (:mod:`~bikecount.api.quick_records`), else by the records' contract.

    Raises:
        RecordError: naming each row, column and reason.
    """
    frame = quick_frame(records)
    return frame if frame is not None else require_valid(records_frame(records))


# Unset fields (``lower``/``upper`` when no interval is asked) are left out of the answer.
@router.post(
    "/predict",
    summary="Predict hourly counts",
    responses=PREDICT_ERRORS,
    response_model_exclude_unset=True,
)
async def predict(
    body: PredictRequest, cache: CacheDep, settings: SettingsDep
) -> PredictionsPublic:
    """Predict records given in either spelling; ``metric`` serves the best version by it;
    ``interval`` adds each prediction's interval at that level.

    A small request whose model is loaded is answered on the event loop; any other (a big
    batch, a model to look up or load) on a worker thread.
    """
    if body.interval is not None and get_spec(body.model_type).task != "regression":
        raise InvalidFieldError("interval", f"{body.model_type} predicts classes: no interval")
    serve = partial(serve_predictions, cache, settings, body.records, body.model_type, body.metric)
    loaded = cache.peek(body.model_type, body.metric)
    if loaded is not None and len(body.records) <= INLINE_RECORDS:
        served, result = serve(loaded=loaded)
    else:
        served, result = await run_in_threadpool(serve)
    answer = PredictionsPublic(
        predictions=result.values.tolist(),
        labels=result.labels,
        model_type=body.model_type,
        model_version=served.version,
        count=len(result.values),
    )
    if body.interval is not None:
        answer.lower, answer.upper = interval_lists(served, result.values, body.interval)
    return answer


def interval_lists(
    served: ServedModel, predictions: np.ndarray, level: float
) -> tuple[list[float], list[float]]:
    """The (lower, upper) bounds of served predictions at ``level``, from the model's own
    calibration (:mod:`bikecount.intervals`).

    Raises:
        ApiError: 409, the version was trained before intervals and carries no calibration.
    """
    name = f"{served.model_type} v{served.version}"
    try:
        lower, upper = model_bounds(served.model, predictions, level, name)
    except NoCalibrationError as exc:
        raise ApiError(str(exc), status_code=409) from None
    return lower.round(3).tolist(), upper.round(3).tolist()
