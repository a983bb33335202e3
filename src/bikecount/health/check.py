"""The health check: every counter's status on a day, since when, and why.

Method (docs/monitoring.md, "Counter health"):

1. Expected hourly counts: each counter's seasonal profile (median of the same weekday type and
   hour over ``profile_weeks`` weeks of working days before the ``lookback_days`` examined), or
   the forecast passed in, scaled hour by hour by the city factor (the median observed/expected
   log ratio across counters).
2. Outage: zeros or no data for hours where traffic was expected; stuck: one non-zero value
   repeated for hours (:mod:`bikecount.health.faults`).
3. Low / high: the day's total, outside those hours, against the scaled expectation, as a log
   ratio. The band is the counter's own: its median ratio over the history, plus or minus
   ``band_sigmas`` robust standard deviations of it (at least ``min_log_shift``), or the
   forecast's interval when one is given.
4. Since: back over the days examined while the status holds, to the first hour of the fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from bikecount.health.expected import (
    HourlyGrid,
    build_grid,
    city_log_factor,
    forecast_cells,
    scale,
    seasonal_profile,
    usable_days,
)
from bikecount.health.faults import Run, outage_runs, stuck_runs
from bikecount.health.report import (
    HIGH,
    LOW,
    OK,
    OUTAGE,
    STATUSES,
    STUCK,
    UNKNOWN,
    CounterHealth,
    HealthParams,
    HealthReport,
)

# A day's total is judged on at least this many hours outside outages and stuck runs.
MIN_JUDGED_HOURS = 12


@dataclass(frozen=True)
class _Expectations:
    """What the check compares with, per hour and counter: the base expectation (profile or
    forecast), its city-scaled form and the forecast's interval; per hour, whether enough
    counters reported to know the city's factor."""

    base: np.ndarray
    scaled: np.ndarray
    lower: np.ndarray  # the forecast's interval, NaN without one
    upper: np.ndarray
    city_known: np.ndarray  # per hour: enough counters to tell the city's factor


def check_health(
    records: pd.DataFrame,
    day: date,
    params: HealthParams | None = None,
    expected: pd.DataFrame | None = None,
) -> HealthReport:
    """Every counter's health on ``day`` from its hourly counts up to and including that day.

    Args:
        records: canonical records (``counter``, ``timestamp`` tz-aware, ``count``); rows after
            ``day`` are ignored, and ``params.profile_weeks`` weeks before the days examined are
            needed for a profile.
        day: the local date to judge.
        params: the thresholds (defaults: :class:`HealthParams`).
        expected: optional hourly expectations (``counter``, ``timestamp``, ``expected``, and
            optionally ``lower``/``upper``), e.g. a model's forecast and interval; they replace
            the profile where given.

    Returns:
        A :class:`HealthReport` with one :class:`CounterHealth` per counter seen in the
        history or on the day, worst status first.

    Raises:
        HealthInputError: columns are missing or no counter has a count on ``day``.
    """
    params = params or HealthParams()
    examined = [day - timedelta(days=i) for i in range(params.lookback_days - 1, -1, -1)]
    history = [examined[0] - timedelta(days=i) for i in range(params.profile_weeks * 7, 0, -1)]
    grid = build_grid(records, history[0], day)
    days = history + examined
    day_of_row = np.array([days.index(d) for d in grid.dates], dtype=int)
    usable = usable_days(grid, days, params)
    expectations = _expect(grid, history, usable, day_of_row, params, expected)
    context = _Context(grid, expectations, day_of_row, len(history), len(days), params)
    judged = [_judge(context, c, usable[:, c]) for c in range(len(grid.counters))]
    order = {status: i for i, status in enumerate(STATUSES)}
    judged.sort(key=lambda health: (order[health.status], health.counter))
    return HealthReport(day, _city_factor(context), tuple(judged))


def _expect(
    grid: HourlyGrid,
    history: list[date],
    usable: np.ndarray,
    day_of_row: np.ndarray,
    params: HealthParams,
    forecast: pd.DataFrame | None,
) -> _Expectations:
    profile = seasonal_profile(grid, history, usable[: len(history)], params)
    nothing = np.full(grid.counts.shape, np.nan)
    base, lower, upper = profile, nothing, nothing
    if forecast is not None:
        given, lower, upper = forecast_cells(grid, forecast)
        base = np.where(np.isnan(given), profile, given)
    # Counter-days of zeros or silence are outages: they must not drag the city's factor down.
    excluded = ~usable[day_of_row]
    log_city = city_log_factor(grid.counts, base, excluded, params)
    known = (~np.isnan(grid.counts) & ~np.isnan(base) & ~excluded).sum(axis=1)
    scaled = scale(base, log_city, params.hourly_pseudo_count)
    # An hour most counters miss (the export's gap on a daylight-saving night) is the data's
    # fault, not a counter's: nothing is expected of anyone then.
    if len(grid.counters) >= params.min_city_counters:
        installed = np.arange(len(grid.times))[:, None] >= grid.first_seen[None, :]
        silent = (np.isnan(grid.counts) & installed).sum(axis=1)
        scaled[silent > 0.5 * installed.sum(axis=1)] = np.nan
    return _Expectations(base, scaled, lower, upper, known >= params.min_city_counters)


@dataclass(frozen=True)
class _Context:
    grid: HourlyGrid
    expectations: _Expectations
    day_of_row: np.ndarray
    n_history: int
    n_days: int
    params: HealthParams


def _city_factor(context: _Context) -> float | None:
    """The city's traffic on the day against the profiles: scaled over base expectations."""
    rows = (context.day_of_row == context.n_days - 1) & context.expectations.city_known
    base = context.expectations.base[rows]
    scaled = context.expectations.scaled[rows]
    both = ~np.isnan(base)
    total = float(base[both].sum())
    return float(scaled[both].sum()) / total if rows.any() and total > 0 else None


@dataclass(frozen=True)
class _Day:
    """One counter's day: its status, the runs and ratio behind it, its band of ratios."""

    status: str
    runs: list[Run]
    log_ratio: float
    band: tuple[float, float] | None


def _judge(context: _Context, column: int, usable: np.ndarray) -> CounterHealth:
    grid, ex, params = context.grid, context.expectations, context.params
    counts, scaled = grid.counts[:, column], ex.scaled[:, column]
    runs = outage_runs(counts, scaled, int(grid.first_seen[column]), params)
    runs += stuck_runs(counts, scaled, params)
    faulted = np.zeros(len(counts), dtype=bool)
    for run in runs:
        faulted[run.start : run.stop] = True
    ratios = _daily_log_ratios(context, counts, scaled, faulted)
    history = ratios[: context.n_history][usable[: context.n_history]]
    band = _profile_band(history[~np.isnan(history)], params)
    days = {}
    for index in range(context.n_days - 1, context.n_history - 1, -1):
        days[index] = _judge_day(context, column, index, runs, ratios[index], band)
        if days[index].status != days[context.n_days - 1].status:
            break
    return _health(context, column, days)


def _daily_log_ratios(
    context: _Context, counts: np.ndarray, scaled: np.ndarray, faulted: np.ndarray
) -> np.ndarray:
    """Per day, log((observed + K) / (expected + K)) of the totals over the hours outside
    outages and stuck runs; NaN with fewer than MIN_JUDGED_HOURS of them."""
    judged = ~np.isnan(counts) & ~np.isnan(scaled) & ~faulted
    index = context.day_of_row
    observed = np.bincount(index, np.where(judged, counts, 0), minlength=context.n_days)
    expected = np.bincount(index, np.where(judged, scaled, 0), minlength=context.n_days)
    hours = np.bincount(index, judged, minlength=context.n_days)
    k = context.params.daily_pseudo_count
    ratios = np.log((observed + k) / (expected + k))
    return np.where(hours >= MIN_JUDGED_HOURS, ratios, np.nan)


def _profile_band(history: np.ndarray, params: HealthParams) -> tuple[float, float] | None:
    """The counter's usual log ratios: median ± band_sigmas robust standard deviations (MAD),
    at least ± min_log_shift; None without min_profile_days days to learn it from."""
    if len(history) < params.min_profile_days:
        return None
    center = float(np.median(history))
    sigma = 1.4826 * float(np.median(np.abs(history - center)))
    half = max(params.band_sigmas * sigma, params.min_log_shift)
    return center - half, center + half


def _interval_band(
    context: _Context, column: int, rows: np.ndarray, band: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The forecast's interval of the day's total, as log ratios, widened and at least
    ± min_log_shift; the profile's band when the interval does not cover the day."""
    ex, params = context.expectations, context.params
    lower, upper = ex.lower[rows, column], ex.upper[rows, column]
    base = ex.base[rows, column]
    if not len(base) or np.isnan(lower).any() or np.isnan(upper).any():
        return band
    k, widen = params.daily_pseudo_count, params.interval_widening
    low = widen * np.log((lower.sum() + k) / (base.sum() + k))
    high = widen * np.log((upper.sum() + k) / (base.sum() + k))
    return min(float(low), -params.min_log_shift), max(float(high), params.min_log_shift)


def _judge_day(
    context: _Context,
    column: int,
    index: int,
    runs: list[Run],
    log_ratio: float,
    band: tuple[float, float] | None,
) -> _Day:
    rows = context.day_of_row == index
    touching = [run for run in runs if run.overlaps(rows)]
    band = _interval_band(context, column, rows, band)
    for status in (OUTAGE, STUCK):
        mine = [run for run in touching if run.status == status]
        if mine:
            return _Day(status, mine, log_ratio, band)
    if band is None or np.isnan(log_ratio):
        return _Day(UNKNOWN, [], log_ratio, band)
    status = LOW if log_ratio < band[0] else HIGH if log_ratio > band[1] else OK
    return _Day(status, [], log_ratio, band)


def _health(context: _Context, column: int, days: dict[int, _Day]) -> CounterHealth:
    """The counter's report line: today's status, since when, its totals and the reason."""
    grid, ex, k = context.grid, context.expectations, context.params.daily_pseudo_count
    today_index = context.n_days - 1
    today = days[today_index]
    rows = context.day_of_row == today_index
    counts, scaled = grid.counts[rows, column], ex.scaled[rows, column]
    observed = None if np.isnan(counts).all() else float(np.nansum(counts))
    expected = None if np.isnan(scaled).all() else float(np.nansum(scaled))
    lower = upper = None
    if today.band is not None and expected is not None:
        lower, upper = (max((expected + k) * float(np.exp(b)) - k, 0.0) for b in today.band)
    since, hours = _since_and_hours(context, column, days)
    return CounterHealth(
        counter=grid.counters[column],
        status=today.status,
        since=since,
        expected=expected,
        observed=observed,
        lower=lower,
        upper=upper,
        hours=hours,
        reason=_reason(today, since, expected, observed, context),
    )


def _since_and_hours(
    context: _Context, column: int, days: dict[int, _Day]
) -> tuple[pd.Timestamp | None, tuple[int, ...]]:
    """The first hour of the current fault, and the local hours of the day it touches."""
    grid, today_index = context.grid, context.n_days - 1
    today = days[today_index]
    rows = context.day_of_row == today_index
    if today.status in (OUTAGE, STUCK):
        current = max(today.runs, key=lambda run: run.stop)
        touched = np.zeros(len(rows), dtype=bool)
        for run in today.runs:
            touched[run.start : run.stop] = True
        return grid.times[current.start], _local_hours(grid, rows & touched)
    if today.status not in (LOW, HIGH) or today.band is None:
        return None, ()
    beyond = _hours_beyond(context, column, today.status, today.band)
    first_day = min(index for index, day in days.items() if day.status == today.status)
    first_rows = np.flatnonzero((context.day_of_row == first_day) & beyond)
    start = first_rows[0] if len(first_rows) else np.flatnonzero(context.day_of_row == first_day)[0]
    return grid.times[start], _local_hours(grid, rows & beyond)


def _hours_beyond(
    context: _Context, column: int, status: str, band: tuple[float, float]
) -> np.ndarray:
    """The hours (with traffic expected) whose own log ratio is beyond the band, as a mask."""
    k = context.params.hourly_pseudo_count
    counts = context.grid.counts[:, column]
    scaled = context.expectations.scaled[:, column]
    with np.errstate(invalid="ignore"):
        ratios = np.log((counts + k) / (scaled + k))
        beyond = ratios < band[0] if status == LOW else ratios > band[1]
        return beyond & (scaled >= 1.0)


def _local_hours(grid: HourlyGrid, mask: np.ndarray) -> tuple[int, ...]:
    return tuple(sorted({int(hour) for hour in grid.hours[mask]}))


def _reason(
    today: _Day,
    since: pd.Timestamp | None,
    expected: float | None,
    observed: float | None,
    context: _Context,
) -> str:
    """One sentence of evidence for the status."""
    when = since.strftime("%Y-%m-%d %H:%M") if since is not None else ""
    if today.status == OUTAGE:
        run = max(today.runs, key=lambda r: r.stop)
        hours = run.stop - run.start
        at_least = "at least " if run.start == 0 else ""
        what = "no data" if observed is None else "zeros or no data"
        bikes = "" if np.isnan(run.expected) else f" where {run.expected:.0f} bikes were expected"
        return f"{what} for {at_least}{hours} h since {when}{bikes}"
    if today.status == STUCK:
        run = max(today.runs, key=lambda r: r.stop)
        return (
            f"the same count ({run.value:.0f}) for {run.stop - run.start} h since {when} "
            f"where {run.expected:.0f} bikes were expected in all"
        )
    if today.status == UNKNOWN:
        needed, weeks = context.params.min_profile_days, context.params.profile_weeks
        return (
            f"not enough history to judge: fewer than {needed} days of this kind with counts "
            f"in the {weeks} weeks before"
        )
    assert today.band is not None
    factor = float(np.exp(today.log_ratio))
    usual = f"usual range x{np.exp(today.band[0]):.2f} to x{np.exp(today.band[1]):.2f}"
    if today.status == OK:
        return f"x{factor:.2f} of expected, within its {usual}"
    return (
        f"{observed or 0:.0f} bikes where {expected or 0:.0f} were expected (x{factor:.2f}), "
        f"{'below' if today.status == LOW else 'above'} its {usual}, since {when}"
    )
