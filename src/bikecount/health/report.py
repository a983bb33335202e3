"""What a health check says: the statuses, the thresholds it uses, and its report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

OK, OUTAGE, STUCK, LOW, HIGH, UNKNOWN = "ok", "outage", "stuck", "low", "high", "unknown"
# Worst first: a day with an outage and low counts in its other hours is an outage.
STATUSES: tuple[str, ...] = (OUTAGE, STUCK, LOW, HIGH, UNKNOWN, OK)
FAULTS: tuple[str, ...] = (OUTAGE, STUCK, LOW, HIGH)

# Columns of the optional frame of expected hourly counts (a model's forecast and its interval).
EXPECTED_COLUMN = "expected"
LOWER_COLUMN = "lower"
UPPER_COLUMN = "upper"


class HealthInputError(ValueError):
    """Records that cannot be checked: no counts on the day, or columns missing."""


@dataclass(frozen=True)
class HealthParams:
    """The thresholds of the check, each a named and documented choice (see docs/monitoring.md).

    Counts are compared in log ratios, ``log((observed + k) / (expected + k))``, with a pseudo
    count ``k`` so that quiet hours (a few bikes at night) do not swing the ratio.
    """

    # History: the seasonal profile is the median of each weekday type and hour over the
    # `profile_weeks` weeks before the `lookback_days` examined (the day and the days before it,
    # to date a fault's start). A profile needs `min_profile_days` working days of its type.
    profile_weeks: int = 6
    lookback_days: int = 7
    min_profile_days: int = 3
    # A day counts in the profile (and in the city factor) when it has at most
    # `max_missing_hours` hours without data and no run of `max_silent_hours` hours of zeros or
    # silence (the quietest counters have a few zero hours a night, not ten).
    max_missing_hours: int = 2
    max_silent_hours: int = 10
    # The city factor (median ratio across counters, hour by hour) needs this many counters;
    # with fewer, counters are compared with their profile alone.
    min_city_counters: int = 5
    hourly_pseudo_count: float = 1.0
    daily_pseudo_count: float = 20.0
    # Outage: zeros or no data for `outage_min_hours` in a row where at least
    # `outage_min_expected` bikes were expected (a quiet night is not an outage); a whole day
    # of them is one even without a profile to compare.
    outage_min_hours: int = 3
    outage_min_expected: float = 20.0
    # Stuck: one non-zero value for `stuck_min_hours` in a row where `stuck_min_expected` bikes
    # were expected (1, 1, 1 at night is traffic; 37 from 7 am to 1 pm is not).
    stuck_min_hours: int = 6
    stuck_min_expected: float = 60.0
    # Low / high: the day's total departs from the city-scaled expectation by more than
    # `band_sigmas` robust standard deviations of the counter's own daily log ratios, and by at
    # least `min_log_shift` (log 2: half or double) however steady the counter is.
    band_sigmas: float = 4.0
    min_log_shift: float = math.log(2.0)
    # With a forecast's interval given, the band is that interval of the day's total, widened
    # by this factor in log ratio (hourly intervals say little about a whole day's error).
    interval_widening: float = 1.5

    def __post_init__(self) -> None:
        for name in ("profile_weeks", "lookback_days", "min_profile_days", "min_city_counters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if self.outage_min_hours < 1 or self.stuck_min_hours < 2:
            raise ValueError("outage_min_hours must be 1 or more and stuck_min_hours 2 or more")
        if self.band_sigmas <= 0 or self.min_log_shift < 0 or self.interval_widening <= 0:
            raise ValueError("band_sigmas and interval_widening must be > 0, min_log_shift >= 0")


@dataclass(frozen=True)
class CounterHealth:
    """One counter's state on the day, with the evidence.

    ``expected`` and ``observed`` are the day's totals over the hours with data (``observed``
    is None when the day has none); ``lower``/``upper`` the range of totals that is not a fault
    (None when unknown); ``since`` the first local hour of the current fault; ``hours`` the
    local hours of the day that the fault touches.
    """

    counter: str
    status: str
    since: pd.Timestamp | None
    expected: float | None
    observed: float | None
    lower: float | None
    upper: float | None
    hours: tuple[int, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "status": self.status,
            "since": self.since.isoformat() if self.since is not None else None,
            "expected": _rounded(self.expected),
            "observed": _rounded(self.observed),
            "lower": _rounded(self.lower),
            "upper": _rounded(self.upper),
            "hours": list(self.hours),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HealthReport:
    """Every counter's health on ``day``; ``city_factor`` is the city's traffic that day against
    the counters' profiles (0.6: 40% below the usual), None when too few counters to tell."""

    day: date
    city_factor: float | None
    counters: tuple[CounterHealth, ...]

    def faults(self) -> list[CounterHealth]:
        """The counters with a fault, worst status first."""
        return [c for c in self.counters if c.status in FAULTS]

    def status_of(self, counter: str) -> CounterHealth:
        """The health of ``counter``; KeyError when the report does not hold it."""
        for health in self.counters:
            if health.counter == counter:
                return health
        raise KeyError(counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "city_factor": _rounded(self.city_factor, 3),
            "counters": [health.to_dict() for health in self.counters],
        }


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)
