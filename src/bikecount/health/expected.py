"""The hourly grid of a health check and what each counter was expected to count in it.

The grid holds every local hour from the first day of history to the checked day (daylight-saving
nights have 23 or 25 of them) by every counter, NaN where a counter sent nothing. Expectations
are a seasonal profile (each counter's median for the same weekday type and hour over the weeks
before), or a forecast when one is given, scaled hour by hour by the city factor: the median,
across counters, of their observed/expected log ratio. A shift the whole city shares (a holiday,
a strike, a storm, a lockdown) moves the factor, not a counter's residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd

from bikecount.features import read_calendar
from bikecount.health.report import (
    EXPECTED_COLUMN,
    LOWER_COLUMN,
    UPPER_COLUMN,
    HealthInputError,
    HealthParams,
)
from bikecount.records import COUNT_COLUMN, COUNTER_COLUMN, PARIS_TZ, TIMESTAMP_COLUMN


@dataclass(frozen=True)
class HourlyGrid:
    """Counts by local hour (rows) and counter (columns), and each hour's calendar."""

    times: pd.DatetimeIndex  # local hours, Europe/Paris
    counters: tuple[str, ...]
    counts: np.ndarray  # hours x counters, NaN where no record
    dates: np.ndarray  # each hour's local date
    hours: np.ndarray  # each hour's local hour of day
    day_types: np.ndarray  # 0 weekday, 1 Saturday, 2 Sunday or public holiday
    first_seen: np.ndarray  # per counter, the row of its first record

    def rows_of(self, days: list[date]) -> np.ndarray:
        return np.isin(self.dates, np.array(days, dtype=object))


def local_midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(datetime.combine(day, time())).tz_localize(PARIS_TZ)


def to_local_hours(stamps: pd.Series) -> pd.Series:
    """Timestamps to the start of their hour in Paris (floored in UTC: an autumn night's two
    2 am hours stay two)."""
    return stamps.dt.tz_convert("UTC").dt.floor("h").dt.tz_convert(PARIS_TZ)


def build_grid(records: pd.DataFrame, first_day: date, day: date) -> HourlyGrid:
    """The grid of ``records`` from ``first_day`` to ``day`` (local), cut at the last record.

    Raises:
        HealthInputError: columns are missing, or no counter has a count on ``day``.
    """
    missing = [c for c in (COUNTER_COLUMN, TIMESTAMP_COLUMN, COUNT_COLUMN) if c not in records]
    if missing:
        raise HealthInputError(f"records without the column(s) {', '.join(missing)}")
    start, end = local_midnight(first_day), local_midnight(day + timedelta(days=1))
    stamps = records[TIMESTAMP_COLUMN]
    inside = (stamps >= start) & (stamps < end) & records[COUNT_COLUMN].notna()
    on_day = inside & (stamps >= local_midnight(day))
    if not on_day.any():
        counted = stamps[records[COUNT_COLUMN].notna()]
        span = (
            f"they run from {counted.min().date()} to {counted.max().date()}"
            if len(counted)
            else "none has a count"
        )
        raise HealthInputError(f"no counts on {day} in the records ({span})")
    hours = to_local_hours(stamps[inside])
    names = records.loc[inside, COUNTER_COLUMN].astype(str).to_numpy()
    values = records.loc[inside, COUNT_COLUMN].to_numpy(dtype=float)
    # The records end where they end: hours after the last one are not "no data" yet.
    utc = pd.date_range(start.tz_convert("UTC"), hours.max().tz_convert("UTC"), freq="h")
    times = utc.tz_convert(PARIS_TZ)
    columns, counters = pd.factorize(names, sort=True)
    counts = np.full((len(times), len(counters)), np.nan)
    rows = times.get_indexer(pd.DatetimeIndex(hours))
    # Two records of one counter and hour: the first one counts.
    first = ~pd.Index(rows * len(counters) + columns).duplicated()
    counts[rows[first], columns[first]] = values[first]
    seen = ~np.isnan(counts)
    local = pd.Series(times)
    return HourlyGrid(
        times=times,
        counters=tuple(str(c) for c in counters),
        counts=counts,
        dates=np.array(local.dt.date, dtype=object),
        hours=local.dt.hour.to_numpy(),
        day_types=read_calendar(local).day_type,
        first_seen=np.where(seen.any(axis=0), seen.argmax(axis=0), len(times)),
    )


def usable_days(grid: HourlyGrid, days: list[date], params: HealthParams) -> np.ndarray:
    """Per day and counter, whether the day can teach what is normal: few hours without data and
    no long silence (half a day of zeros is an outage, not a quiet day)."""
    usable = np.zeros((len(days), len(grid.counters)), dtype=bool)
    for i, day in enumerate(days):
        rows = grid.counts[grid.dates == day]
        missing = np.isnan(rows).sum(axis=0)
        silent = np.isnan(rows) | (rows == 0)
        usable[i] = (missing <= params.max_missing_hours) & (
            _longest_runs(silent) < params.max_silent_hours
        )
    return usable


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """Per column of a 2-d boolean array, the length of its longest run of True."""
    longest = np.zeros(mask.shape[1], dtype=int)
    current = np.zeros(mask.shape[1], dtype=int)
    for row in mask:
        current = np.where(row, current + 1, 0)
        longest = np.maximum(longest, current)
    return longest


def seasonal_profile(
    grid: HourlyGrid, history: list[date], usable: np.ndarray, params: HealthParams
) -> np.ndarray:
    """Each hour's expected count: the median of its weekday type and hour over the ``usable``
    days (days x counters) of ``history``; NaN without ``min_profile_days`` of them."""
    rows = grid.rows_of(history)
    values = grid.counts[rows].copy()
    day_index = {day: i for i, day in enumerate(history)}
    which = np.array([day_index[d] for d in grid.dates[rows]], dtype=int)
    values[~usable[which]] = np.nan
    keys = pd.MultiIndex.from_arrays([grid.day_types[rows], grid.hours[rows]])
    table = pd.DataFrame(values, index=keys)
    medians = table.groupby(level=[0, 1]).median()
    # Rows, that is days (but for the doubled hour of an autumn night: near enough).
    days_used = table.notna().groupby(level=[0, 1]).sum()
    medians = medians.where(days_used >= params.min_profile_days)
    lookup = pd.MultiIndex.from_arrays([grid.day_types, grid.hours])
    return medians.reindex(lookup).to_numpy(dtype=float)


def forecast_cells(
    grid: HourlyGrid, forecast: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A forecast frame (counter, timestamp, expected[, lower, upper]) on the grid's cells.

    Returns:
        expected, lower and upper (hours x counters), NaN where the forecast says nothing.
    """
    needed = (COUNTER_COLUMN, TIMESTAMP_COLUMN, EXPECTED_COLUMN)
    missing = [c for c in needed if c not in forecast]
    if missing:
        raise HealthInputError(f"expected values without the column(s) {', '.join(missing)}")
    keyed = forecast.assign(**{TIMESTAMP_COLUMN: to_local_hours(forecast[TIMESTAMP_COLUMN])})
    cells = []
    for column in (EXPECTED_COLUMN, LOWER_COLUMN, UPPER_COLUMN):
        if column not in keyed:
            cells.append(np.full(grid.counts.shape, np.nan))
            continue
        wide = keyed.pivot_table(
            index=TIMESTAMP_COLUMN, columns=COUNTER_COLUMN, values=column, aggfunc="first"
        )
        wide = wide.reindex(index=grid.times, columns=list(grid.counters))
        cells.append(wide.to_numpy(dtype=float))
    return cells[0], cells[1], cells[2]


def city_log_factor(
    counts: np.ndarray, expected: np.ndarray, excluded: np.ndarray, params: HealthParams
) -> np.ndarray:
    """Per hour, the median across counters of log((observed + k) / (expected + k)); 0 where
    fewer than ``min_city_counters`` counters have both (``excluded`` cells: known outages)."""
    k = params.hourly_pseudo_count
    valid = ~np.isnan(counts) & ~np.isnan(expected) & ~excluded
    ratios = np.where(valid, np.log((np.nan_to_num(counts) + k) / (np.nan_to_num(expected) + k)), 0)
    ratios = np.where(valid, ratios, np.nan)
    medians = pd.DataFrame(ratios).median(axis=1, skipna=True).to_numpy()
    enough = valid.sum(axis=1) >= params.min_city_counters
    return np.where(enough & ~np.isnan(medians), medians, 0.0)


def scale(expected: np.ndarray, log_factor: np.ndarray, pseudo_count: float) -> np.ndarray:
    """Expected counts moved by the city's log factor per hour, in the ratio's own terms."""
    scaled = (expected + pseudo_count) * np.exp(log_factor)[:, None] - pseudo_count
    return np.clip(scaled, 0.0, None)
