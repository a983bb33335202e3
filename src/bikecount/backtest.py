"""Backtests with a rolling origin: each day forecast only from what was known before it.

For each local day D from ``start`` to ``end``, the model is the one ``bikecount train`` would
register on the records before D (retrained every ``retrain_every`` days, with the same fitting
code), and D's forecast is :func:`bikecount.forecast.forecast_day` with the counts before D. So the
figures are those of the daily pipeline in production, not of a model that saw the future.

Each day's prediction interval is calibrated on the residuals of the backtest's own forecasts of
the ``interval_days`` days before it (:mod:`bikecount.intervals`): day-ahead errors the models
were not fitted on, recent enough to follow a city-wide shift. So that the first day has such a
window too, the backtest first forecasts the ``interval_days`` days before ``start`` (when the
records reach twice that far back) with one model fitted on the records before them; those days
are not reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pandas as pd
from pydantic import BaseModel

from bikecount.config import Settings
from bikecount.evaluate import finite_metrics, per_counter_rmse, regression_metrics
from bikecount.fitting import fit_for_deployment
from bikecount.forecast import GRID_COLUMNS, GapSettings, forecast_day
from bikecount.intervals import DEFAULT_LEVEL, calibrate, check_level, interval_metrics
from bikecount.models import get_spec, parse_params
from bikecount.models.protocol import RecordModel
from bikecount.records import PARIS_TZ

if TYPE_CHECKING:
    from bikecount.registry import Registry

logger = logging.getLogger(__name__)

# The backtests' experiment, ``<prefix>-backtest`` (see Settings.mlflow_name).
BACKTEST = "backtest"

# Called after each day: (day, days done, days in all, whether the model was retrained).
DayCallback = Callable[[date, int, int, bool], None]
# One day's errors: its ``day`` (ISO), ``rows``, and each regression metric (None: undefined).
# Typed loosely: the command line reads a row's values by name, each as what it knows it is.
DayRow = dict[str, Any]


class BacktestSummary(TypedDict):
    """The JSON of ``bikecount backtest --json``."""

    model_type: str
    start: str
    end: str
    retrain_every: int
    metrics: dict[str, float | None]
    days: list[DayRow]
    per_counter_rmse: dict[str, float]
    retrained_on: list[str]
    calibrated_from: str | None
    duration_seconds: float
    run_id: str | None


@dataclass
class BacktestResult:
    """Forecasts of every day, their errors overall, per day and per counter."""

    model_type: str
    start: date
    end: date
    retrain_every: int
    metrics: dict[str, float]
    days: list[DayRow]
    per_counter_rmse: dict[str, float]
    forecasts: pd.DataFrame = field(repr=False)
    retrained_on: list[str] = field(default_factory=list)
    calibrated_from: date | None = None
    duration_seconds: float = 0.0
    run_id: str | None = None

    def summary(self) -> BacktestSummary:
        """The JSON of ``bikecount backtest --json``."""
        return {
            "model_type": self.model_type,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "retrain_every": self.retrain_every,
            "metrics": finite_metrics(self.metrics, digits=4),
            "days": self.days,
            "per_counter_rmse": self.per_counter_rmse,
            "retrained_on": self.retrained_on,
            "calibrated_from": None if self.calibrated_from is None else str(self.calibrated_from),
            "duration_seconds": self.duration_seconds,
            "run_id": self.run_id,
        }


def local_days(records: pd.DataFrame) -> pd.Series:
    """The local (Europe/Paris) day of each canonical record."""
    return records["timestamp"].dt.tz_convert(PARIS_TZ).dt.date


def run_backtest(
    records: pd.DataFrame,
    model_type: str,
    start: date,
    end: date,
    settings: Settings,
    *,
    retrain_every: int = 7,
    hyperparams: Mapping[str, object] | None = None,
    interval: float = DEFAULT_LEVEL,
    on_day: DayCallback | None = None,
) -> BacktestResult:
    """Forecast each day from ``start`` to ``end`` with a rolling origin (see the module doc).

    Args:
        records: canonical records with counts, in any order.
        model_type: a regressor (``rf``, ``gbm``, ``nn``).
        start, end: the first and last local days forecast (both included).
        settings: seed, outage rule, holdout days (for ``nn``'s epochs) and the forecast gap.
        retrain_every: days between retrainings (1: a new model every day).
        hyperparams: overrides of the model type's defaults, as for ``bikecount train``.
        interval: the level of each forecast's interval (``lower``, ``upper``).
        on_day: called after each day (progress).

    Raises:
        HyperparameterError, UnknownModelTypeError, IntervalLevelError; ValueError: a
            classifier, an empty period, or no record before ``start``.
    """
    params = _checked_params(model_type, start, end, retrain_every, hyperparams)
    interval = check_level(interval)
    records = records[records["count"].notna()].sort_values("timestamp", kind="stable")
    days_of = local_days(records)
    targets = _target_days(days_of, start, end)
    fit = partial(fit_for_deployment, model_type, params, settings=settings)
    roll = _Roll(fit, GapSettings.from_settings(settings), interval, settings.interval_days)
    started = time.perf_counter()
    warmup = _warmup_days(days_of, start, settings.interval_days)
    if warmup:
        roll.warm_up(records, days_of, warmup)
    forecasts, days, retrained_on = roll.run(records, days_of, targets, retrain_every, on_day)
    truth, predicted = forecasts["count"].to_numpy(float), forecasts["prediction"].to_numpy(float)
    metrics = regression_metrics(truth, predicted) | interval_metrics(
        truth, forecasts["lower"], forecasts["upper"], interval
    )
    return BacktestResult(
        model_type=model_type,
        start=start,
        end=end,
        retrain_every=retrain_every,
        metrics=metrics,
        days=days,
        per_counter_rmse=per_counter_rmse(forecasts, predicted),
        forecasts=forecasts,
        retrained_on=retrained_on,
        calibrated_from=warmup[0] if warmup else None,
        duration_seconds=round(time.perf_counter() - started, 2),
    )


def _warmup_days(days_of: pd.Series, start: date, interval_days: int) -> list[date]:
    """The days before ``start`` forecast only to calibrate the first days' intervals: up to
    ``interval_days`` of them, leaving at least as many days of records to fit on before them
    (with less, none: the first day then has no interval, and the next ones learn from the
    days before them)."""
    first = days_of.min()
    begin = max(start - timedelta(days=interval_days), first + timedelta(days=interval_days))
    return [begin + timedelta(days=n) for n in range((start - begin).days)]


class _Roll:
    """The rolling origin and the rolling calibration of the intervals.

    The model is fitted on the records before the first target day, then again every
    ``retrain_every`` days on the records before that day; each day is forecast from the counts
    before it, and its interval calibrated on the residuals of the forecasts of the
    ``interval_days`` days before it.
    """

    def __init__(
        self,
        fit: Callable[[pd.DataFrame], RecordModel],
        gap: GapSettings,
        level: float,
        interval_days: int,
    ) -> None:
        self.fit, self.gap, self.level, self.interval_days = fit, gap, level, interval_days
        self.past: dict[date, pd.DataFrame] = {}  # each day's counts and forecasts, for intervals

    def warm_up(self, records: pd.DataFrame, days_of: pd.Series, days: list[date]) -> None:
        """Forecast ``days`` with one model fitted on the records before them, for their
        residuals only."""
        logger.info("calibrating intervals on %d days from %s", len(days), days[0])
        model = self.fit(records[(days_of < days[0]).to_numpy()])
        for day in days:
            self._forecast(model, records, days_of, day)

    def run(
        self,
        records: pd.DataFrame,
        days_of: pd.Series,
        targets: list[date],
        retrain_every: int,
        on_day: DayCallback | None,
    ) -> tuple[pd.DataFrame, list[DayRow], list[str]]:
        """Forecast the target days.

        Returns:
            The forecast records (with ``prediction``, ``lower``, ``upper``), each day's metrics,
            the days the model was retrained on.
        """
        model: RecordModel | None = None
        retrained_on: list[str] = []
        outputs: list[pd.DataFrame] = []
        day_rows: list[DayRow] = []
        for done, day in enumerate(targets, start=1):
            retrain = (day - targets[0]).days % retrain_every == 0  # the first day among them
            if model is None or retrain:
                before = records[(days_of < day).to_numpy()]
                logger.info("retraining on %d records before %s", len(before), day)
                model = self.fit(before)
                retrained_on.append(day.isoformat())
            forecast = self._forecast(model, records, days_of, day)
            if forecast is not None:
                outputs.append(forecast)
                day_rows.append(self._day_metrics(day, forecast))
            if on_day is not None:
                on_day(day, done, len(targets), retrain)
        return pd.concat(outputs), day_rows, retrained_on

    def _forecast(
        self, model: RecordModel, records: pd.DataFrame, days_of: pd.Series, day: date
    ) -> pd.DataFrame | None:
        """The day's records with their forecast and interval (None: no record that day)."""
        grid = records[(days_of == day).to_numpy()]
        if grid.empty:
            return None
        before = records[(days_of < day).to_numpy()]
        predictions = forecast_day(model.predict, grid[GRID_COLUMNS], before, self.gap)
        lower, upper = self._interval(day, predictions)
        forecast = grid.assign(prediction=predictions, lower=lower, upper=upper)
        self.past[day] = forecast[["count", "prediction"]]
        return forecast

    def _interval(self, day: date, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds from the residuals of the last ``interval_days`` days (NaN: none yet)."""
        window = [
            self.past[d]
            for d in (day - timedelta(days=n) for n in range(1, self.interval_days + 1))
            if d in self.past
        ]
        if not window:
            nothing = np.full(len(predictions), np.nan)
            return nothing, nothing
        past = pd.concat(window)
        calibration = calibrate(past["count"], past["prediction"], source="backtest")
        return calibration.bounds(predictions, self.level)

    def _day_metrics(self, day: date, forecast: pd.DataFrame) -> DayRow:
        truth = forecast["count"].to_numpy(float)
        metrics = regression_metrics(truth, forecast["prediction"].to_numpy(float))
        coverage = interval_metrics(truth, forecast["lower"], forecast["upper"], self.level)
        metrics["interval_coverage"] = coverage["interval_coverage"]
        metrics["interval_width_log1p"] = coverage["interval_width_log1p"]
        return {"day": day.isoformat(), "rows": len(truth), **finite_metrics(metrics, digits=4)}


def _checked_params(
    model_type: str,
    start: date,
    end: date,
    retrain_every: int,
    hyperparams: Mapping[str, object] | None,
) -> BaseModel:
    """The hyperparameters of a backtest that can run (see :func:`run_backtest`)."""
    spec = get_spec(model_type)
    if spec.task != "regression":
        raise ValueError(f"backtest forecasts counts: {model_type} is a {spec.task} model")
    if retrain_every < 1:
        raise ValueError(f"--retrain-every must be 1 or more, got {retrain_every}")
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return parse_params(model_type, hyperparams)


def _target_days(days_of: pd.Series, start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, once the records have days before and within."""
    if not (days_of < start).any():
        raise ValueError(f"no record before {start}: nothing to train on")
    if not ((days_of >= start) & (days_of <= end)).any():
        raise ValueError(f"no record from {start} to {end} to forecast")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def log_backtest(
    result: BacktestResult, settings: Settings, registry: Registry, data_path: str
) -> str:
    """Log a backtest to MLflow (experiment ``<prefix>-backtest``); return the run id.

    Parameters say what was run, metrics are the overall ones plus one step per day (step 0 is
    the first day), and the per-counter RMSE is an artifact.
    """
    import mlflow

    registry.use_for_runs()
    experiment_id = registry.ensure_experiment(settings.mlflow_name(BACKTEST))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest-{result.model_type}"):
        mlflow.set_tags({"model_type": result.model_type, "env": settings.env})
        mlflow.log_params(
            {
                "data": data_path,
                "start": result.start.isoformat(),
                "end": result.end.isoformat(),
                "retrain_every": result.retrain_every,
                "forecast_history_days": settings.forecast_history_days,
                "forecast_half_life_hours": settings.forecast_half_life_hours,
                "forecast_shrink_hours": settings.forecast_shrink_hours,
                "forecast_hour_shrink_hours": settings.forecast_hour_shrink_hours,
                "forecast_max_factor": settings.forecast_max_factor,
                "interval_days": settings.interval_days,
            }
        )
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
        for step, day in enumerate(result.days):
            values = {
                f"day_{k}": v for k, v in day.items() if k not in ("day", "rows") and v is not None
            }
            mlflow.log_metrics(values, step=step)
        mlflow.log_dict(result.per_counter_rmse, "per_counter_rmse.json")
        mlflow.log_dict({"days": result.days}, "days.json")
        run = mlflow.active_run()
        assert run is not None
        return run.info.run_id
