"""Day-ahead forecasts: every hour of a coming day, from a model and what is known at forecast time.

The real use of bikecount: after midnight, forecast each counter's hours of the coming day,
knowing every count up to now. A model trained last week knows the season, the calendar and each
counter's usual rhythm; the last days say how far each counter currently runs above or below
what the model expects (roadworks, a new cycle lane, a sensor drifting, a model grown stale).
:func:`forecast_day` moves the model's forecast by that recent gap, in log1p space, where models
learn counts:

    log1p(forecast) = log1p(model) + counter gap + hour gap

    counter gap = shrunk weighted mean of log1p(count) - log1p(model) over the counter's hours
    hour gap    = shrunk weighted mean of what is left, over the counter's same hour of the day

- Only hours before the forecast day are read: changing the counts of the day cannot change its
  forecast (what the backtest measures is what production can do).
- Outages are not traffic: runs of zeros of at least ``outage_hours`` and missing hours are left
  out of the gap, so a counter broken last week is forecast at its usual level, not at zero.
- The gap is weighted towards the latest hours and shrunk towards zero when few hours are known,
  and capped, so one odd day cannot move a forecast much. A counter with no usable history gets
  the plain model's forecast.

One function serves ``bikecount backtest`` (a model in memory) and the daily pipeline (the model
behind ``POST /predict``): both pass a ``predict`` callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from bikecount.cleaning import outage_mask
from bikecount.config import Settings
from bikecount.records import (
    CANONICAL_INPUTS,
    COUNT_COLUMN,
    COUNTER_COLUMN,
    PARIS_TZ,
    TIMESTAMP_COLUMN,
)

logger = logging.getLogger(__name__)

# Canonical records (counter, timestamp, lat, lon) -> predicted counts, in order.
Predictor = Callable[[pd.DataFrame], np.ndarray]

# A grid to forecast: canonical records without their counts.
GRID_COLUMNS = list(CANONICAL_INPUTS)


def day_hours(day: date) -> pd.DatetimeIndex:
    """The local hours of ``day`` (23 or 25 on daylight-saving days), Paris time."""
    start = pd.Timestamp(day).tz_localize(PARIS_TZ)
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(PARIS_TZ)
    return pd.date_range(start, end, freq="h", inclusive="left")


def day_grid(counters: pd.DataFrame, day: date) -> pd.DataFrame:
    """Canonical records (counter, timestamp, lat, lon) for every counter and hour of the day."""
    hours = day_hours(day)
    grid = counters.loc[counters.index.repeat(len(hours))].reset_index(drop=True)
    stamps = pd.to_datetime(np.tile(hours, len(counters)), utc=True)
    grid[TIMESTAMP_COLUMN] = stamps.tz_convert(PARIS_TZ)
    return grid[GRID_COLUMNS]


@dataclass(frozen=True)
class GapSettings:
    """How the recent gap between counts and model is measured: the ``forecast_*`` and
    ``outage_hours`` of :class:`Settings`, where their defaults and meanings are stated."""

    history_days: int
    half_life_hours: float
    shrink_hours: float
    hour_shrink_hours: float
    max_factor: float
    outage_hours: int

    @classmethod
    def from_settings(cls, settings: Settings) -> GapSettings:
        return cls(
            history_days=settings.forecast_history_days,
            half_life_hours=settings.forecast_half_life_hours,
            shrink_hours=settings.forecast_shrink_hours,
            hour_shrink_hours=settings.forecast_hour_shrink_hours,
            max_factor=settings.forecast_max_factor,
            outage_hours=settings.outage_hours,
        )


def usable_history(history: pd.DataFrame, before: pd.Timestamp, gap: GapSettings) -> pd.DataFrame:
    """The counted hours of the ``history_days`` days before ``before``, outages left out."""
    start = before - pd.Timedelta(days=gap.history_days)
    times = history[TIMESTAMP_COLUMN]
    window = history[(times >= start) & (times < before)]
    window = window[window[COUNT_COLUMN].notna()]
    if window.empty:
        return window
    return window[~outage_mask(window, gap.outage_hours).to_numpy()]


def recent_gaps(
    history: pd.DataFrame, expected: np.ndarray, before: pd.Timestamp, gap: GapSettings
) -> tuple[pd.Series, pd.Series]:
    """Per counter, and per counter and hour of the day, the recent gap to the model.

    Args:
        history: usable canonical records with counts (see :func:`usable_history`).
        expected: the model's predictions for those records, in order.
        before: the start of the forecast day (recency is measured back from it).
        gap: window, weights, shrinkage and cap.

    Returns:
        (counter gap indexed by counter; hour gap indexed by (counter, hour)), in log1p units,
        each shrunk towards zero; their sum is capped at ``log(max_factor)`` by the caller.
    """
    if history.empty:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    residual = np.log1p(history[COUNT_COLUMN].to_numpy(float)) - np.log1p(
        np.clip(np.asarray(expected, float), 0, None)
    )
    age_hours = (before - history[TIMESTAMP_COLUMN]).dt.total_seconds().to_numpy() / 3600.0
    weight = 0.5 ** (age_hours / gap.half_life_hours)
    counters = history[COUNTER_COLUMN].to_numpy()
    frame = pd.DataFrame({"counter": counters, "wr": weight * residual, "w": weight})
    sums = frame.groupby("counter")[["wr", "w"]].sum()
    # Shrunk towards no gap by ``shrink_hours`` hours' worth of weight (an hour just before the
    # forecast weighs one): a counter with a few known hours barely moves.
    counter_gap = sums["wr"] / (sums["w"] + gap.shrink_hours)
    left = residual - pd.Series(counters).map(counter_gap).to_numpy(float)
    frame = pd.DataFrame(
        {
            "counter": counters,
            "hour": history[TIMESTAMP_COLUMN].dt.hour.to_numpy(),
            "wr": weight * left,
            "w": weight,
        }
    )
    sums = frame.groupby(["counter", "hour"])[["wr", "w"]].sum()
    hour_gap = sums["wr"] / (sums["w"] + gap.hour_shrink_hours)
    return counter_gap, hour_gap


def forecast_day(
    predict: Predictor,
    grid: pd.DataFrame,
    history: pd.DataFrame,
    settings: Settings | GapSettings,
) -> np.ndarray:
    """Forecast the hours of ``grid`` (one day) from the model and the counts known before it.

    Args:
        predict: the model (canonical records in, counts out).
        grid: canonical records to forecast (counter, timestamp, lat, lon), all of one day.
        history: canonical records with ``count``; only those before the grid's first hour are
            read, so the day's own counts never leak in.
        settings: the gap settings (``forecast_*`` of :class:`Settings`).

    Returns:
        Counts, one per grid row, in order, never negative.
    """
    gap = settings if isinstance(settings, GapSettings) else GapSettings.from_settings(settings)
    if grid.empty:
        return np.empty(0)
    before = grid[TIMESTAMP_COLUMN].min().normalize()
    known = usable_history(history, before, gap)
    parts = [grid[GRID_COLUMNS]] + ([known[GRID_COLUMNS]] if len(known) else [])
    rows = pd.concat(parts, ignore_index=True)
    predicted = np.clip(np.asarray(predict(rows), float), 0, None)
    base, expected = predicted[: len(grid)], predicted[len(grid) :]
    counter_gap, hour_gap = recent_gaps(known, expected, before, gap)
    shift = grid[COUNTER_COLUMN].map(counter_gap).fillna(0.0).to_numpy(float)
    if len(hour_gap):
        cells = pd.MultiIndex.from_arrays([grid[COUNTER_COLUMN], grid[TIMESTAMP_COLUMN].dt.hour])
        shift = shift + hour_gap.reindex(cells).fillna(0.0).to_numpy(float)
    cap = np.log(gap.max_factor)
    shift = np.clip(shift, -cap, cap)
    logger.debug("day-ahead gaps of %d counter(s) from %d hours", len(counter_gap), len(known))
    return np.clip(np.expm1(np.log1p(base) + shift), 0, None)
