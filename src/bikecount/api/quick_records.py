"""JSON records made into the canonical frame in plain Python, when nothing is in doubt.

:func:`~bikecount.records.parse_records` checks a batch with vectorised pandas steps, each of
which costs tens of microseconds however few the rows: most of a one-record prediction. Records
sent to the API nearly always come in one plain form: a counter name, an ISO 8601 timestamp
with its UTC offset, coordinates as ``"lat,lon"`` or ``{"lon": .., "lat": ..}`` inside Paris.
:func:`quick_frame` reads that form record by record and builds the canonical frame once.

Anything else (another form of a value, a value the contract refuses, a doubt) gives ``None``:
the caller then takes the full path, which names every problem. So the two paths never differ
on a value (a parity test holds them to it) and record errors keep their one home.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeGuard

import numpy as np
import pandas as pd

from bikecount.api.records_body import INT64_MAX, INT64_MIN
from bikecount.records import (
    ALIASES,
    COORDINATES,
    COUNT,
    COUNT_COLUMN,
    COUNTER,
    COUNTER_COLUMN,
    LAT_COLUMN,
    LON_COLUMN,
    PARIS_LAT,
    PARIS_LON,
    PARIS_TZ,
    TIMESTAMP,
    TIMESTAMP_COLUMN,
)

# Reading a record here costs about 5 us (each distinct timestamp and place text is read once);
# the contract's pandas steps about 5 ms a batch plus 15 to 30 us a record: one by one wins at
# every size a request may have (``max_records``, 10,000 by default: 55 ms against 290 on a
# busy 2-core machine). A batch refused after all costs its reading at most; the bound keeps
# that cost bounded where a server is set to take more.
QUICK_RECORDS_LIMIT = 20_000

# The timestamp form read here: date, time to the second, and an offset (``Z`` or ``±HH:MM``).
TIMESTAMP_FORM = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:(Z)|([+-])(\d{2}):(\d{2}))"
)
# A decimal number as text, such as ``48.853720`` or ``2.35702``, and nothing else.
DECIMAL_FORM = re.compile(r"-?\d{1,3}(?:\.\d{1,15})?")
# A count as text: digits only, as the export writes it.
COUNT_FORM = re.compile(r"\d{1,15}")
# Years whose instants numpy and pandas hold in nanoseconds with room to spare.
YEARS = (1900, 2200)
# A count as an integer: exactly representable as a float, as pandas will hold it.
LARGEST_EXACT_COUNT = 2**53
EPOCH = datetime(1970, 1, 1)
NS_PER_SECOND = 10**9


def quick_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """The canonical frame of ``records``, as ``require_valid(records_frame(records))`` gives it,
    or ``None`` when they are too many or not all in the plain form (see the module's doc).

    Returns:
        A frame of columns ``counter``, ``timestamp`` (Europe/Paris), ``lat``, ``lon``, ``count``
        indexed 0..n-1, or None: then use the full path.
    """
    if not 0 < len(records) <= QUICK_RECORDS_LIMIT or holds_huge_integer(records):
        return None
    counters: list[str] = []
    instants: list[int] = []
    lats: list[float] = []
    lons: list[float] = []
    counts: list[float] = []
    for record in records:
        keys = field_keys(tuple(record))
        if keys is None:
            return None
        counter_key, timestamp_key, place_key, count_key = keys
        counter = read_counter(record.get(counter_key) if counter_key else None)
        instant = read_instant(record.get(timestamp_key) if timestamp_key else None)
        place = read_place(record.get(place_key) if place_key else None)
        count = read_count(record.get(count_key) if count_key else None)
        if counter is None or instant is None or place is None or count is None:
            return None
        counters.append(counter)
        instants.append(instant)
        lats.append(place[0])
        lons.append(place[1])
        counts.append(count)
    timestamps = pd.DatetimeIndex(np.asarray(instants, dtype="datetime64[ns]"), tz="UTC")
    return pd.DataFrame(
        {
            COUNTER_COLUMN: np.asarray(counters, dtype=object),
            TIMESTAMP_COLUMN: timestamps.tz_convert(PARIS_TZ),
            LAT_COLUMN: np.asarray(lats, dtype=float),
            LON_COLUMN: np.asarray(lons, dtype=float),
            COUNT_COLUMN: np.asarray(counts, dtype=float),
        }
    )


def holds_huge_integer(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a record holds an integer beyond 64 bits (an error the full path names): one
    pass over every value of the batch, the extremes of its integers compared once."""
    integers = [value for record in records for value in record.values() if type(value) is int]
    return bool(integers) and not (INT64_MIN <= min(integers) and max(integers) <= INT64_MAX)


# Records of one request nearly always share their keys: the keys' labels are read once.
@lru_cache(maxsize=256)
def field_keys(
    keys: tuple[str, ...],
) -> tuple[str | None, str | None, str | None, str | None] | None:
    """Which of ``keys`` holds the counter, the timestamp, the coordinates and the count (None:
    absent), in either spelling; None when a field is spelled twice (an error the full path
    names)."""
    by_label: dict[str, str] = {}
    for key in keys:
        label = ALIASES.get(key, key)
        if label in by_label:
            return None
        by_label[label] = key
    return (
        by_label.get(COUNTER),
        by_label.get(TIMESTAMP),
        by_label.get(COORDINATES),
        by_label.get(COUNT),
    )


def read_counter(value: object) -> str | None:
    """A counter name: text, stripped, not empty."""
    if type(value) is not str:
        return None
    name = value.strip()
    return name or None


def read_instant(value: object) -> int | None:
    """Nanoseconds since 1970-01-01 UTC of an ISO 8601 timestamp with its offset."""
    return instant_of_text(value) if type(value) is str else None


# A batch repeats its texts (a day of every counter: 24 timestamps, 52 places): each distinct
# text is read once. The bound keeps the memory a client's texts can take small.
TEXTS_CACHED = 4_096


@lru_cache(maxsize=TEXTS_CACHED)
def instant_of_text(value: str) -> int | None:
    """:func:`read_instant` of a text."""
    match = TIMESTAMP_FORM.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, utc, sign, off_hours, off_minutes = match.groups()
    if not YEARS[0] <= int(year) <= YEARS[1]:
        return None
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:  # no such day or time (2021-02-30, 25:00): the full path says so
        return None
    offset = timedelta(0)
    if utc is None:
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
        if offset >= timedelta(hours=24):
            return None
        offset = offset if sign == "+" else -offset
    return ((local - offset) - EPOCH) // timedelta(seconds=1) * NS_PER_SECOND


def read_place(value: object) -> tuple[float, float] | None:
    """(lat, lon) of ``"lat,lon"`` or ``{"lon": .., "lat": ..}``, inside Paris."""
    if type(value) is str:
        return place_of_text(value)
    if isinstance(value, Mapping):
        lat_value, lon_value = value.get("lat"), value.get("lon")
        if not (is_plain_number(lat_value) and is_plain_number(lon_value)):
            return None
        return inside_paris(float(lat_value), float(lon_value))
    return None


@lru_cache(maxsize=TEXTS_CACHED)
def place_of_text(value: str) -> tuple[float, float] | None:
    """:func:`read_place` of ``"lat,lon"``."""
    parts = value.split(",", 1)
    if len(parts) != 2:
        return None
    lat_text, lon_text = parts[0].strip(), parts[1].strip()
    if not (DECIMAL_FORM.fullmatch(lat_text) and DECIMAL_FORM.fullmatch(lon_text)):
        return None
    return inside_paris(float(lat_text), float(lon_text))


def inside_paris(lat: float, lon: float) -> tuple[float, float] | None:
    """(lat, lon) when the point is inside Paris, else None."""
    inside = PARIS_LAT[0] <= lat <= PARIS_LAT[1] and PARIS_LON[0] <= lon <= PARIS_LON[1]
    return (lat, lon) if inside else None


def is_plain_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool (JSON's true is no coordinate)."""
    return type(value) in (int, float)


def read_count(value: object) -> float | None:
    """A count as a float: NaN when absent, a whole number of bikes otherwise."""
    if value is None:
        return np.nan
    if type(value) is int and 0 <= value <= LARGEST_EXACT_COUNT:
        return float(value)
    if type(value) is str and COUNT_FORM.fullmatch(value):
        return float(value)
    return None
