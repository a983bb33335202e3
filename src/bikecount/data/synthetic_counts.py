"""The counts of the synthetic generator (:mod:`bikecount.data.synthetic`): for every (hour,
counter), an expected count that is a product of calendar, weather and counter factors, then a
negative binomial draw around it, with outages as runs of zeros.
"""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd

# Day factors Monday..Sunday on top of the profiles (Tuesday-Thursday busiest, Sunday quietest).
WEEKDAY_FACTORS = np.array([0.93, 1.03, 1.04, 1.04, 0.96, 1.05, 0.95])
SUNDAY = 6
NB_SHAPE = 20.0  # gamma shape of the negative binomial: variance = mu + mu^2 / NB_SHAPE


def draw_day_factors(days: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    """Calendar and weather factor of each local day, shared by all counters.

    Seasons peak in July; August and the Christmas week dip; the weather drifts over a few days
    and rainy days (more often in winter) lose a quarter to two thirds of their traffic.
    """
    doy = days.dayofyear.to_numpy()
    season = 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 200) / 365.25)
    back_to_work = 1.0 + 0.2 * np.exp(-(((doy - 262) / 22.0) ** 2))
    summer_break = 1.0 - 0.42 * np.exp(-(((doy - 224) / 14.0) ** 2))
    christmas = np.where(((days.month == 12) & (days.day >= 23)) | (doy == 1), 0.75, 1.0)
    spells = np.convolve(rng.normal(0.0, 0.1, len(days) + 4), np.ones(5) / np.sqrt(5), "valid")
    rain_chance = 0.14 + 0.06 * np.cos(2 * np.pi * (doy - 15) / 365.25)
    rainy = rng.uniform(size=len(days)) < rain_chance
    rain = np.where(rainy, rng.uniform(0.35, 0.8, len(days)), 1.0)
    return season * back_to_work * summer_break * christmas * np.exp(spells) * rain


def classify_days(days: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Weekend flag and weekday index (Monday=0) per day, public holidays counted as Sundays."""
    french = holidays.France(years=range(days.year.min(), days.year.max() + 1))
    holiday = np.array([day in french for day in days.date])
    weekday = np.where(holiday, SUNDAY, days.weekday.to_numpy())
    return weekday >= 5, weekday


def build_counter_profiles(counters: pd.DataFrame) -> np.ndarray:
    """Hourly profile of each counter, shape (counters, 2 [weekday, weekend], 24), mean ~1."""
    weekday = np.stack(counters["weekday_profile"].to_list())
    weekend = np.stack(counters["weekend_profile"].to_list())
    return np.stack([weekday, weekend], axis=1)


def expected_counts(
    hours: pd.DatetimeIndex, counters: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Expected count of every (hour, counter): the product of all the factors, before noise."""
    local_days = hours.tz_localize(None).normalize()
    days, day_of_hour = np.unique(local_days, return_inverse=True)
    days = pd.DatetimeIndex(days)
    weekend, weekday = classify_days(days)
    day_factor = draw_day_factors(days, rng) * WEEKDAY_FACTORS[weekday]
    hour_noise = np.exp(rng.normal(0.0, 0.08, len(hours)))  # showers, events: all counters
    shared = day_factor[day_of_hour] * hour_noise
    profiles = build_counter_profiles(counters)
    hour_of_day = hours.hour.to_numpy()
    counter_profile = profiles[:, weekend[day_of_hour].astype(int), hour_of_day].T
    years = ((days - days[0]).days.to_numpy() / 365.25)[:, None]
    growth = (1.0 + counters["growth"].to_numpy()[None, :]) ** years
    local_noise = np.exp(rng.normal(0.0, 0.12, (len(days), len(counters))))
    per_day = (growth * local_noise)[day_of_hour]
    return shared[:, None] * counter_profile * per_day * counters["level"].to_numpy()[None, :]


def draw_outage_mask(n_hours: int, n_counters: int, rng: np.random.Generator) -> np.ndarray:
    """True where a counter is out of order: a few counters get runs of days to weeks of zeros."""
    broken = np.zeros((n_hours, n_counters), dtype=bool)
    n_runs = rng.poisson(0.5 * n_hours / (365 * 24), n_counters)
    for counter in np.flatnonzero(n_runs):
        lengths = np.clip(rng.lognormal(np.log(6 * 24), 1.0, n_runs[counter]), 24, 60 * 24)
        starts = rng.integers(0, n_hours, n_runs[counter])
        for first, length in zip(starts, lengths.astype(int), strict=True):
            broken[first : first + length, counter] = True
    return broken


def draw_counts(
    hours: pd.DatetimeIndex, counters: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Negative binomial counts (gamma-Poisson) around the expectation, zero during outages."""
    mean = expected_counts(hours, counters, rng)
    rate = rng.gamma(NB_SHAPE, mean / NB_SHAPE)
    counts = rng.poisson(rate)
    counts[draw_outage_mask(len(hours), len(counters), rng)] = 0
    return counts
