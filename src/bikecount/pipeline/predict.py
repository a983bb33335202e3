"""Daily predictions: every known counter's hours of one day, through the RegModel API.

Counters and coordinates come from the stored raw counts. The forecast is the day-ahead one of
:func:`bikecount.forecast.forecast_day`: the served model, moved by each counter's recent gap to
the stored counts of the days before (the same function the backtest measures). Predictions are
stored with the version that made them, and with their interval, calibrated as the backtest's
are (:mod:`bikecount.intervals`): on the residuals of the stored predictions of the
``interval_days`` days before, against the counts that came in since. When the day's true counts
are in the store, the day's RMSE and MAE per version are stored too, so the errors of successive
champions can be followed day by day.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from bikecount.config import Settings
from bikecount.forecast import day_grid, forecast_day
from bikecount.intervals import DEFAULT_LEVEL, IntervalCalibration, calibrate
from bikecount.pipeline import PipelineError, call_api
from bikecount.pipeline.store import (
    known_counters,
    read_counts,
    read_predictions,
    replace_daily_error,
    replace_predictions,
)
from bikecount.pipeline.store_engine import open_pipeline_store
from bikecount.records import (
    COUNT_COLUMN,
    RECORD_KEY,
    to_raw_records,
)

logger = logging.getLogger(__name__)

PREDICT_TIMEOUT_SECONDS = 60.0


@dataclass
class PredictResult:
    """One day's predictions: how many, by which versions, and their errors when known."""

    day: str
    model_type: str
    rows: int
    counters: int
    versions: list[int]
    errors: dict[int, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ScoreResult:
    """One day's errors per model version, or why the day could not be scored yet."""

    day: str
    model_type: str
    errors: dict[int, dict[str, float]] = field(default_factory=dict)
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def predict_day(
    settings: Settings,
    day: date,
    api_url: str | None = None,
    model_type: str | None = None,
    batch_size: int | None = None,
) -> PredictResult:
    """Predict every known counter's hours of ``day`` through ``POST /predict`` and store them.

    When the day's true counts are already stored, its errors are scored at once.
    ``api_url``, ``model_type`` and ``batch_size`` default to the ``pipeline_*`` settings.

    Raises:
        PipelineError: no counter is known yet, or the API is down or refuses a batch (nothing
            is stored then: a day is stored whole or not at all).
    """
    api_url = api_url or settings.pipeline_api_url
    model_type = model_type or settings.pipeline_model_type
    engine = open_pipeline_store(settings)
    counters = known_counters(engine)
    if counters.empty:
        raise PipelineError("no counter in the store yet: run `bikecount pipeline ingest` first")
    grid = day_grid(counters, day)
    first = day - timedelta(days=settings.forecast_history_days)
    history = read_counts(engine, first, day - timedelta(days=1))
    history = history[history[COUNT_COLUMN].notna()]
    batch_size = batch_size or settings.pipeline_batch_size
    for _attempt in range(2):  # a champion crowned between two batches: ask again, once
        model = ApiModel(settings, api_url, model_type, batch_size)
        grid["prediction"] = forecast_day(model.predict, grid, history, settings)
        if len(model.versions) == 1:
            break
    else:
        raise PipelineError(f"the API answered with versions {sorted(model.versions)}: retry")
    grid["model_version"] = model.versions.pop()
    calibration = recent_calibration(engine, day, model_type, settings.interval_days)
    if calibration is not None:
        grid["lower"], grid["upper"] = calibration.bounds(grid["prediction"], DEFAULT_LEVEL)
    replace_predictions(engine, day, grid, model_type)
    versions = sorted({int(v) for v in grid["model_version"]})
    errors = score_day(settings, day, model_type).errors
    logger.info("predicted %d rows of %s with %s versions %s", len(grid), day, model_type, versions)
    return PredictResult(day.isoformat(), model_type, len(grid), len(counters), versions, errors)


def recent_calibration(
    engine: Engine, day: date, model_type: str, days: int
) -> IntervalCalibration | None:
    """The interval calibration of the stored predictions of the ``days`` days before ``day``
    against their counts: forecasts made before the counts came (None: none scored yet)."""
    truth = read_counts(engine, day - timedelta(days=days), day - timedelta(days=1))
    truth = truth[truth[COUNT_COLUMN].notna()]
    if truth.empty:
        return None
    stored = [
        read_predictions(engine, past, model_type)
        for past in sorted(set(truth["timestamp"].dt.date))
    ]
    predicted = pd.concat(stored) if stored else pd.DataFrame()
    if predicted.empty:
        return None
    joined = predicted.merge(truth[[*RECORD_KEY, COUNT_COLUMN]], on=list(RECORD_KEY))
    if joined.empty:
        return None
    return calibrate(joined[COUNT_COLUMN], joined["prediction"], source="pipeline")


class ApiModel:
    """``POST /predict`` as a model: canonical records in, counts out, batch by batch.

    ``versions`` collects the model versions that answered, so a caller can tell whether one
    version made all the predictions.
    """

    def __init__(self, settings: Settings, api_url: str, model_type: str, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        self.settings, self.api_url = settings, api_url
        self.model_type, self.batch_size = model_type, batch_size
        self.versions: set[int] = set()

    def predict(self, records: pd.DataFrame) -> np.ndarray:
        values: list[float] = []
        for start in range(0, len(records), self.batch_size):
            batch = to_raw_records(records.iloc[start : start + self.batch_size])
            payload = {"records": batch.to_dict(orient="records"), "model_type": self.model_type}
            answer = call_api(
                self.settings, self.api_url, "/predict", payload, PREDICT_TIMEOUT_SECONDS
            )
            if len(answer["predictions"]) != len(batch):
                raise PipelineError(
                    f"the API returned {len(answer['predictions'])} predictions "
                    f"for {len(batch)} records"
                )
            values += [float(v) for v in answer["predictions"]]
            self.versions.add(int(answer["model_version"]))
        return np.asarray(values, dtype=float)


def score_day(settings: Settings, day: date, model_type: str | None = None) -> ScoreResult:
    """Store the RMSE and MAE per version of the day's stored predictions against its counts.

    Nothing is scored (and the result says why) when the day has no stored predictions or no
    counted hours yet; predictions made before the counts arrived are scored once they have.
    """
    model_type = model_type or settings.pipeline_model_type
    engine = open_pipeline_store(settings)
    predicted = read_predictions(engine, day, model_type)
    truth = read_counts(engine, day, day)
    truth = truth[truth[COUNT_COLUMN].notna()]
    result = ScoreResult(day.isoformat(), model_type)
    if predicted.empty or truth.empty:
        result.reason = "no stored predictions" if predicted.empty else "no counts stored yet"
        logger.info("%s not scored: %s", day, result.reason)
        return result
    joined = predicted.merge(truth[[*RECORD_KEY, COUNT_COLUMN]], on=list(RECORD_KEY))
    for version, rows in joined.groupby("model_version"):
        diff = rows["prediction"].to_numpy(float) - rows[COUNT_COLUMN].to_numpy(float)
        errors = {
            "rmse": float(np.sqrt(np.mean(diff**2))),
            "mae": float(np.mean(np.abs(diff))),
            "n": float(len(rows)),
        }
        replace_daily_error(engine, day, model_type, int(version), errors)
        result.errors[int(version)] = errors
    return result
