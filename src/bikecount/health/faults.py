"""Runs of hours that betray a broken counter: zeros or silence (outage), one value repeated
(stuck). Each is a fault only where traffic was expected, so a quiet night is neither."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bikecount.health.report import OUTAGE, STUCK, HealthParams


@dataclass(frozen=True)
class Run:
    """Rows ``start`` to ``stop`` (excluded) of one counter's hours, and what they show."""

    status: str
    start: int
    stop: int
    expected: float  # bikes expected over the run (NaN hours left out)
    value: float  # the repeated count (0 for an outage)

    def overlaps(self, rows: np.ndarray) -> bool:
        """Whether the run covers any of the ``rows`` flagged True."""
        return bool(rows[self.start : self.stop].any())


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of every run of True in a 1-d boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def outage_runs(
    counts: np.ndarray, expected: np.ndarray, first_seen: int, params: HealthParams
) -> list[Run]:
    """One counter's runs of zeros or missing hours (from its first record on) long enough, over
    enough expected traffic, to be an outage; a whole day of them is one even without a profile.
    """
    silent = (np.isnan(counts) | (counts == 0)) & (np.arange(len(counts)) >= first_seen)
    bikes_before = np.concatenate(([0.0], np.cumsum(np.nan_to_num(expected))))
    known_before = np.concatenate(([0], np.cumsum(~np.isnan(expected))))
    found = []
    for start, stop in runs_of(silent):
        hours = stop - start
        if hours < params.outage_min_hours:
            continue
        bikes = float(bikes_before[stop] - bikes_before[start])
        unknown = known_before[stop] == known_before[start]
        if bikes >= params.outage_min_expected or (unknown and hours >= 24):
            found.append(Run(OUTAGE, start, stop, bikes if not unknown else np.nan, 0.0))
    return found


def stuck_runs(counts: np.ndarray, expected: np.ndarray, params: HealthParams) -> list[Run]:
    """One counter's runs of one non-zero count repeated for ``stuck_min_hours`` or more where
    ``stuck_min_expected`` bikes were expected (real traffic follows the day's curve)."""
    found = []
    same = np.concatenate(([False], counts[1:] == counts[:-1]))  # NaN never equals
    # A run of k equal values is k-1 "same as before" flags after its first hour.
    for start, stop in runs_of(same):
        first = start - 1
        value = counts[first]
        if value <= 0 or stop - first < params.stuck_min_hours:
            continue
        bikes = float(np.nansum(expected[first:stop]))
        if bikes >= params.stuck_min_expected:
            found.append(Run(STUCK, first, stop, bikes, float(value)))
    return found
