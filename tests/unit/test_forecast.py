"""Day-ahead forecasts (bikecount.forecast): the recent gap, outages, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikecount.forecast import GapSettings, forecast_day

PARIS_TZ = "Europe/Paris"
DAY = pd.Timestamp("2021-06-15", tz=PARIS_TZ)
PLACES = {"a": (48.85, 2.35), "b": (48.86, 2.36)}
GAP = GapSettings(
    history_days=7,
    half_life_hours=48,
    shrink_hours=24,
    hour_shrink_hours=2.0,
    max_factor=3.0,
    outage_hours=24,
)


def hours(start: pd.Timestamp, days: int, counter: str, count: float | None) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=days * 24, freq="h")
    lat, lon = PLACES[counter]
    return pd.DataFrame(
        {
            "counter": counter,
            "timestamp": stamps,
            "lat": lat,
            "lon": lon,
            "count": np.nan if count is None else count,
        }
    )


def flat_model(records: pd.DataFrame) -> np.ndarray:
    """A model that expects 100 bikes an hour everywhere."""
    return np.full(len(records), 100.0)


def grid(*counters: str) -> pd.DataFrame:
    frames = [hours(DAY, 1, c, None).drop(columns="count") for c in counters]
    return pd.concat(frames, ignore_index=True)


def test_without_history_the_forecast_is_the_plain_model() -> None:
    empty = hours(DAY - pd.Timedelta(days=7), 0, "a", 1.0)
    forecast = forecast_day(flat_model, grid("a", "b"), empty, GAP)
    assert forecast == pytest.approx(np.full(48, 100.0))


def test_a_counter_running_above_the_model_is_forecast_above_it() -> None:
    week = pd.concat(
        [
            hours(DAY - pd.Timedelta(days=7), 7, "a", 200.0),
            hours(DAY - pd.Timedelta(days=7), 7, "b", 100.0),
        ]
    )
    forecast = forecast_day(flat_model, grid("a", "b"), week, GAP)
    a, b = forecast[:24], forecast[24:]
    assert np.all(a > 150) and np.all(a < 200)  # most of the gap, shrunk a little
    assert b == pytest.approx(np.full(24, 100.0), rel=1e-6)


def test_an_hour_of_the_day_running_above_the_model_is_forecast_above_it() -> None:
    week = hours(DAY - pd.Timedelta(days=7), 7, "a", 100.0)
    evening = week["timestamp"].dt.hour >= 18
    week.loc[evening, "count"] = 200.0  # evenings run at twice the model, the rest on it
    forecast = forecast_day(flat_model, grid("a"), week, GAP)
    hour = grid("a")["timestamp"].dt.hour.to_numpy()
    assert forecast[hour >= 18].min() > 150
    assert forecast[hour < 18].max() < forecast[hour >= 18].min()


def test_recent_hours_weigh_more_than_old_ones() -> None:
    start = DAY - pd.Timedelta(days=7)
    low_then_high = pd.concat(
        [hours(start, 5, "a", 50.0), hours(DAY - pd.Timedelta(days=2), 2, "a", 200.0)]
    )
    high_then_low = pd.concat(
        [hours(start, 5, "a", 200.0), hours(DAY - pd.Timedelta(days=2), 2, "a", 50.0)]
    )
    rising = forecast_day(flat_model, grid("a"), low_then_high, GAP)
    falling = forecast_day(flat_model, grid("a"), high_then_low, GAP)
    assert rising[0] > falling[0]


def test_a_counter_broken_last_week_is_not_forecast_at_zero() -> None:
    start = DAY - pd.Timedelta(days=7)
    broken = pd.concat(
        [hours(start, 4, "a", 0.0), hours(start + pd.Timedelta(days=4), 3, "a", None)]
    )
    forecast = forecast_day(flat_model, grid("a"), broken, GAP)
    assert forecast == pytest.approx(np.full(24, 100.0))


def test_an_outage_inside_the_week_is_left_out_of_the_gap() -> None:
    start = DAY - pd.Timedelta(days=7)
    week = pd.concat(
        [hours(start, 3, "a", 0.0), hours(start + pd.Timedelta(days=3), 4, "a", 100.0)]
    )
    forecast = forecast_day(flat_model, grid("a"), week, GAP)
    assert forecast == pytest.approx(np.full(24, 100.0), rel=1e-6)


def test_the_gap_is_capped() -> None:
    week = hours(DAY - pd.Timedelta(days=7), 7, "a", 100_000.0)
    forecast = forecast_day(flat_model, grid("a"), week, GAP)
    assert np.all(forecast <= 101 * 3)


def test_counts_of_the_day_itself_never_change_its_forecast() -> None:
    week = hours(DAY - pd.Timedelta(days=7), 7, "a", 150.0)
    same_day = hours(DAY, 1, "a", 150.0)
    changed_day = hours(DAY, 1, "a", 5_000.0)
    with_day = forecast_day(flat_model, grid("a"), pd.concat([week, same_day]), GAP)
    with_changed_day = forecast_day(flat_model, grid("a"), pd.concat([week, changed_day]), GAP)
    assert with_day == pytest.approx(with_changed_day)


def test_the_model_is_asked_once_for_the_day_and_the_week() -> None:
    calls: list[int] = []

    def counting_model(records: pd.DataFrame) -> np.ndarray:
        calls.append(len(records))
        return flat_model(records)

    forecast_day(counting_model, grid("a"), hours(DAY - pd.Timedelta(days=7), 7, "a", 120.0), GAP)
    assert calls == [24 + 7 * 24]
