"""The one feature pipeline: raw records in, model inputs out, the same in training and serving.

It is saved inside every model, so a model takes raw records (either spelling of the contract).

Unseen counters: a counter that was not in the training data is predicted as the known counter
nearest to it (by its coordinates), since neighbouring counters on the same street or axis carry
similar traffic. It is logged, never an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import holidays
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from vacances_scolaires_france import SchoolHolidayDates

from bikecount.records import (
    CANONICAL_INPUTS,
    COUNTER_COLUMN,
    LAT_COLUMN,
    LON_COLUMN,
    TIMESTAMP_COLUMN,
    require_valid,
)

logger = logging.getLogger(__name__)

FEATURE_COLUMNS: tuple[str, ...] = (
    "counter_code",
    "counter_level",
    "profile_level",
    "lat",
    "lon",
    "hour",
    "weekday",
    "month",
    "day_of_year",
    "is_weekend",
    "is_holiday",
    "is_school_holiday",
)

# Paris is in school-holiday zone C; summer and winter breaks empty the commute.
SCHOOL_ZONE = "C"


def is_canonical(frame: pd.DataFrame) -> bool:
    return all(col in frame.columns for col in CANONICAL_INPUTS)


class RecordParser(TransformerMixin, BaseEstimator):
    """Raw records (export or snake_case spelling) to the canonical frame; canonical passes as is.

    Any invalid record is a :class:`~bikecount.records.RecordError`: a model never guesses.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> RecordParser:
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = X if is_canonical(X) else require_valid(X)
        return frame[list(CANONICAL_INPUTS)]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(CANONICAL_INPUTS, dtype=object)


def french_holidays(years: np.ndarray) -> frozenset:
    """The dates of French public holidays in the given years."""
    return _french_holidays(tuple(sorted(int(year) for year in years)))


def school_holidays(years: np.ndarray) -> frozenset:
    """The dates of Paris (zone C) school holidays in the given years (none outside the data)."""
    return _school_holidays(tuple(sorted(int(year) for year in years)))


# Cached: building the calendars costs milliseconds, far more than a one-record prediction.
@lru_cache(maxsize=64)
def _french_holidays(years: tuple[int, ...]) -> frozenset:
    return frozenset(holidays.France(years=list(years)).keys())


@lru_cache(maxsize=64)
def _school_holidays(years: tuple[int, ...]) -> frozenset:
    calendar = _school_calendar()
    dates: set = set()
    for year in years:
        try:
            dates.update(calendar.holidays_for_year_and_zone(year, SCHOOL_ZONE))
        except Exception:  # the package's calendar has no data for that year
            logger.debug("no school holiday calendar for %s", year)
    return frozenset(dates)


@lru_cache(maxsize=1)
def _school_calendar() -> SchoolHolidayDates:
    return SchoolHolidayDates()


DAY_TYPES = ("weekday", "saturday", "sunday or public holiday")
# 1970-01-01, day 0 of numpy's dates, was a Thursday (Monday is 0, as pandas counts).
EPOCH_WEEKDAY = 3


@lru_cache(maxsize=64)
def _day_numbers(dates: frozenset) -> np.ndarray:
    """Dates as sorted days since 1970-01-01, for a vectorised membership test."""
    return np.sort(np.asarray(sorted(dates), dtype="datetime64[D]").astype(np.int64))


@dataclass(frozen=True)
class LocalCalendar:
    """The local calendar of timestamps, as arrays: what every calendar feature derives from.

    Plain numpy on the wall-clock times, not pandas' ``.dt`` accessors (each one builds a frame's
    worth of objects): the same values, in microseconds for a few rows and far less time for
    many. ``hour``, ``weekday``, ``month`` and ``day_of_year`` are int32 as pandas gives them.
    """

    day: np.ndarray  # local date, days since 1970-01-01
    hour: np.ndarray
    weekday: np.ndarray  # Monday 0 ... Sunday 6
    month: np.ndarray
    day_of_year: np.ndarray
    is_holiday: np.ndarray  # bool
    is_school_holiday: np.ndarray  # bool

    @property
    def day_type(self) -> np.ndarray:
        """0 for a working weekday, 1 for Saturday, 2 for Sunday or a French public holiday."""
        return np.where((self.weekday == 6) | self.is_holiday, 2, np.where(self.weekday == 5, 1, 0))

    def columns(self) -> dict[str, np.ndarray]:
        """The calendar feature columns by name, with the dtypes pandas' accessors give."""
        return {
            "hour": self.hour,
            "weekday": self.weekday,
            "month": self.month,
            "day_of_year": self.day_of_year,
            "is_weekend": (self.weekday >= 5).astype(np.int64),
            "is_holiday": self.is_holiday.astype(np.int64),
            "is_school_holiday": self.is_school_holiday.astype(np.int64),
        }


def wall_clock(timestamps: pd.Series) -> np.ndarray:
    """The local wall-clock times of timestamps (in their own time zone) as datetime64[ns]."""
    # The series' own array, not its ``.dt`` accessor: the same values, without building a
    # series around them (most of the time this takes for a few rows).
    values = timestamps.array
    if getattr(timestamps.dtype, "tz", None) is not None:
        values = values.tz_localize(None)
    return values.to_numpy(dtype="datetime64[ns]")


def is_member(days: np.ndarray, sorted_days: np.ndarray) -> np.ndarray:
    """Whether each of ``days`` is one of ``sorted_days`` (``np.isin``'s answer, by a binary
    search: a few rows need microseconds instead of a sort of both arrays)."""
    if len(sorted_days) == 0:
        return np.zeros(len(days), dtype=bool)
    found = np.searchsorted(sorted_days, days).clip(max=len(sorted_days) - 1)
    return sorted_days[found] == days


def read_calendar(timestamps: pd.Series) -> LocalCalendar:
    """The local calendar of Europe/Paris timestamps: hour, weekday, date, holidays."""
    wall = wall_clock(timestamps)
    days = wall.astype("datetime64[D]")
    day = days.astype(np.int64)
    years = days.astype("datetime64[Y]")
    year_numbers = np.unique(years.astype(np.int64)) + 1970
    return LocalCalendar(
        day=day,
        hour=((wall - days) // np.timedelta64(1, "h")).astype(np.int32),
        weekday=((day + EPOCH_WEEKDAY) % 7).astype(np.int32),
        month=(days.astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.int32),
        day_of_year=((days - years).astype(np.int64) + 1).astype(np.int32),
        is_holiday=is_member(day, _day_numbers(french_holidays(year_numbers))),
        is_school_holiday=is_member(day, _day_numbers(school_holidays(year_numbers))),
    )


def calendar_features(timestamps: pd.Series) -> pd.DataFrame:
    """Local-time calendar features of Europe/Paris timestamps."""
    return pd.DataFrame(read_calendar(timestamps).columns(), index=timestamps.index)


class CounterCalendarFeatures(TransformerMixin, BaseEstimator):
    """Canonical records to numeric features: counter identity and level, place, calendar.

    Learned at fit: the known counters, ranked by their mean target so that the ordinal
    ``counter_code`` means something to a tree, their mean target (``counter_level``) and their
    coordinates (for the unseen-counter fallback).
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> CounterCalendarFeatures:
        target = pd.Series(np.zeros(len(X)) if y is None else np.asarray(y, dtype=float))
        level = target.groupby(X[COUNTER_COLUMN].to_numpy()).mean().sort_values(kind="stable")
        self.counters_ = level.index.to_numpy(dtype=object)
        self.counter_level_ = level.to_numpy(dtype=float)
        places = X.groupby(COUNTER_COLUMN)[[LAT_COLUMN, LON_COLUMN]].median().loc[self.counters_]
        self.counter_places_ = places.to_numpy(dtype=float)
        self.profile_ = self.fit_profiles(X, target.to_numpy())
        self.n_features_in_ = X.shape[1]
        return self

    def fit_profiles(self, X: pd.DataFrame, target: np.ndarray) -> np.ndarray:
        """Mean target per counter, day type and hour: each counter's own weekly rhythm.

        A tree then only has to learn what moves a counter off its rhythm (season, holidays),
        not the rhythm of every counter. Cells without data take the counter's level.
        """
        codes = pd.Index(self.counters_).get_indexer(X[COUNTER_COLUMN].to_numpy())
        calendar = read_calendar(X[TIMESTAMP_COLUMN])
        cells = (codes * len(DAY_TYPES) + calendar.day_type) * 24 + calendar.hour
        size = len(self.counters_) * len(DAY_TYPES) * 24
        sums = np.bincount(cells, weights=target, minlength=size)
        counts = np.bincount(cells, minlength=size)
        fallback = np.repeat(self.counter_level_, len(DAY_TYPES) * 24)
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
        return profile.reshape(len(self.counters_), len(DAY_TYPES), 24)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "counters_")
        codes = self.encode_counters(X)
        calendar = read_calendar(X[TIMESTAMP_COLUMN])
        columns = {
            "counter_code": codes,
            "counter_level": self.counter_level_[codes],
            "profile_level": self.profile_[codes, calendar.day_type, calendar.hour],
            "lat": X[LAT_COLUMN].to_numpy(dtype=float),
            "lon": X[LON_COLUMN].to_numpy(dtype=float),
            **calendar.columns(),
        }
        # Arrays, not series: placed by position, so an index with repeated labels is kept. The
        # dict in the columns' order, not ``columns=``: that would select them again (twice
        # the time for a few rows).
        return pd.DataFrame({name: columns[name] for name in FEATURE_COLUMNS}, index=X.index)

    def encode_counters(self, X: pd.DataFrame) -> np.ndarray:
        """Counter codes; an unseen counter takes the code of the nearest known counter."""
        index = pd.Index(self.counters_)
        codes = index.get_indexer(X[COUNTER_COLUMN].to_numpy())
        unseen = codes < 0
        if unseen.any():
            names = sorted(set(X[COUNTER_COLUMN].to_numpy()[unseen]))
            logger.warning(
                "%d unseen counter(s) predicted as their nearest known counter: %s",
                len(names),
                ", ".join(names[:5]),
            )
            codes[unseen] = self.nearest_counter(
                X[LAT_COLUMN].to_numpy(dtype=float)[unseen],
                X[LON_COLUMN].to_numpy(dtype=float)[unseen],
            )
        return codes

    def nearest_counter(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Codes of the known counters nearest to the given points (equirectangular distance)."""
        scale = np.cos(np.radians(48.86))
        d_lat = lat[:, None] - self.counter_places_[None, :, 0]
        d_lon = (lon[:, None] - self.counter_places_[None, :, 1]) * scale
        return np.argmin(d_lat**2 + d_lon**2, axis=1)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(FEATURE_COLUMNS, dtype=object)


def build_feature_pipeline() -> Pipeline:
    """The feature steps that start every model: parse records, then derive features."""
    return Pipeline([("records", RecordParser()), ("features", CounterCalendarFeatures())])
