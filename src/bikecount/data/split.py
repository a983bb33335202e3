"""Temporal split of raw export records into reference (earlier) and current (later) data sets.

A split is by instant, never by row: every record of one timestamp (all counters of one hour)
falls on the same side, so the current data never shares an hour with the reference data.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bikecount.records import PARIS_TZ, TIMESTAMP, parse_timestamps, spellings

logger = logging.getLogger(__name__)

_TIMESTAMP_SPELLINGS = spellings(TIMESTAMP)
# Share of the time span that goes to the reference data when no cutoff is given.
REFERENCE_FRACTION = 0.7


def split_by_time(
    raw: pd.DataFrame, *, cutoff: str | None = None, fraction: float = REFERENCE_FRACTION
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw records in time: the earlier part is the reference, the later part is current.

    Args:
        raw: raw export records (any spelling of the fields); columns are returned as they are.
        cutoff: a date or date-time (``2021-06-01``); naive values are Europe/Paris local time.
            Rows strictly before it go to the reference, the others to current.
        fraction: when no cutoff is given, the cutoff is the instant at this fraction of the
            time span between the first and the last record (so 0.7 puts ~70% of the hours in
            the reference).

    Returns:
        ``(reference, current)``, each sorted by time (ties keep input order), index reset.

    Raises:
        ValueError: ``fraction`` outside (0, 1), a cutoff that is not a date or that leaves one
            side empty, or timestamps that cannot be parsed.
    """
    times = _timestamps(raw)
    start, end = times.min(), times.max()
    if cutoff is not None:
        boundary = _parse_cutoff(cutoff)
        if not start < boundary <= end:
            raise ValueError(
                f"cutoff {cutoff!r} ({boundary.isoformat()}) is outside the data's range: "
                f"it must be after {start.isoformat()} and no later than {end.isoformat()}"
            )
    else:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
        if start == end:
            raise ValueError(f"all {len(raw)} records share one timestamp; nothing to split")
        boundary = start + (end - start) * fraction
    logger.info("splitting %d records at %s", len(raw), boundary.isoformat())
    ordered, ordered_times = _sort_by_time(raw, times)
    before = (ordered_times < boundary).to_numpy()
    reference = ordered[before].reset_index(drop=True)
    current = ordered[~before].reset_index(drop=True)
    return reference, current


def sample_rows(raw: pd.DataFrame, n: int = 1000, seed: int = 42) -> pd.DataFrame:
    """``n`` rows drawn at random (the same ones for the same seed), returned in time order.

    Args:
        raw: raw export records.
        n: how many rows; all of them when ``raw`` has fewer.
        seed: seed of the random draw.

    Returns:
        The sampled rows sorted by time, index reset.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    times = _timestamps(raw)
    if n < len(raw):
        chosen = np.sort(np.random.default_rng(seed).choice(len(raw), size=n, replace=False))
        raw, times = raw.iloc[chosen], times.iloc[chosen]
    ordered, _ = _sort_by_time(raw, times)
    return ordered.reset_index(drop=True)


def _timestamps(raw: pd.DataFrame) -> pd.Series:
    """The records' instants (Europe/Paris); every one must parse."""
    column = next((col for col in _TIMESTAMP_SPELLINGS if col in raw.columns), None)
    if column is None:
        raise ValueError(f"records have no {TIMESTAMP!r} column to split on")
    if raw.empty:
        raise ValueError("there are no records to split")
    times = parse_timestamps(raw[column])
    if times.isna().any():
        bad = raw[column][times.isna()]
        raise ValueError(
            f"{len(bad)} record(s) have no valid timestamp (first: row {bad.index[0]!r}, "
            f"value {bad.iloc[0]!r}); drop invalid rows first with records.parse_records"
        )
    return times


def _sort_by_time(raw: pd.DataFrame, times: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    # A stable sort keeps the input's order among records of the same hour (e.g. by counter).
    order = np.argsort(times.array.asi8, kind="stable")
    return raw.iloc[order], times.iloc[order]


def _parse_cutoff(cutoff: str) -> pd.Timestamp:
    """A cutoff as a Europe/Paris instant; naive values are local wall-clock time."""
    try:
        boundary = pd.Timestamp(cutoff)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"cutoff {cutoff!r} is not a date; give e.g. 2021-06-01 or 2021-06-01T12:00"
        ) from exc
    if boundary is pd.NaT:
        raise ValueError(f"cutoff {cutoff!r} is not a date; give e.g. 2021-06-01")
    if boundary.tzinfo is not None:
        return boundary.tz_convert(PARIS_TZ)
    local = boundary.tz_localize(PARIS_TZ, ambiguous="NaT", nonexistent="NaT")
    if local is pd.NaT:  # a wall-clock time skipped or repeated by a daylight-saving change
        raise ValueError(
            f"cutoff {cutoff!r} is not one instant in Paris (daylight-saving change); "
            "give its UTC offset, e.g. 2021-03-28T03:00+02:00"
        )
    return local
