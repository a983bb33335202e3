"""A deterministic generator of realistic Paris bike-counter records in the Open Data export schema.

Tests, examples and benchmarks need data that looks like the real export to a model, without the
network or the real files. The counters are the **real Paris counters** (names, ids, coordinates,
installation dates, each one's hourly level and its weekday and weekend rhythm), read from a small
table of aggregates shipped with the package (``paris_counters.json``, derived from Paris Open Data
under the ODbL by ``scripts/derive_paris_counters.py``; no count of the real files is in it). A
config asking for more counters than the table holds gets made-up ones on real streets after them.
The expected hourly count of a counter is a product of factors, each one a known feature of the
real data (calibrated on Sept. 2020 - Aug. 2021):

- the counter's own volume (hourly mean from about 2 to about 220) and hourly profile: commute
  peaks at 8-9h and 18-19h on weekdays, a midday hump at weekends, French public holidays behaving
  like Sundays, the morning peak leaning to one direction of a site and the evening to the other;
- seasons (summer high, winter low), the August and Christmas dips, a few % growth a year;
- the weather: a per-day factor shared by all counters, with rainy days much lower;
- outages: runs of zeros lasting days to weeks on a few counters.

Counts are then drawn from a negative binomial (gamma-Poisson) around that expectation.
Everything is vectorised over a (hours x counters) grid; one ``numpy`` generator seeded by
``SynthConfig.seed`` makes the output a pure function of the config.

The counters are drawn up in :mod:`bikecount.data.paris_counters`, their counts drawn in
:mod:`bikecount.data.synthetic_counts`; this module lays them out as the export's rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bikecount.data.paris_counters import build_counters
from bikecount.data.synthetic_counts import draw_counts
from bikecount.records import EXPORT_COLUMNS, PARIS_TZ

logger = logging.getLogger(__name__)

FRENCH_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def yesterday() -> date:
    """The last whole day in Paris: where generated data ends by default."""
    return datetime.now(ZoneInfo(PARIS_TZ)).date() - timedelta(days=1)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: ``months`` of local days that end on ``end`` (yesterday in Paris when
    neither ``end`` nor ``start`` is given) or begin on ``start``; how many counters; the seed.

    The same seed and period give the same records, whatever the day they are generated on.
    """

    start: str | None = None
    months: int = 13
    n_counters: int = 52  # the real Paris counters of the shipped table
    seed: int = 42
    end: str | None = None

    def __post_init__(self) -> None:
        if self.months < 1:
            raise ValueError(f"months must be 1 or more, got {self.months}")
        if self.n_counters < 1:
            raise ValueError(f"n_counters must be 1 or more, got {self.n_counters}")
        if self.start is not None and self.end is not None:
            raise ValueError("give the period's start or its end, not both")
        for name in ("start", "end"):
            value = getattr(self, name)
            try:
                if value is not None:
                    date.fromisoformat(value)
            except ValueError as exc:
                message = f"{name} must be a date such as 2021-09-30, got {value!r}"
                raise ValueError(message) from exc

    def period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Local midnights of the first day generated and of the day after the last."""
        if self.start is not None:
            first = pd.Timestamp(self.start).normalize()
            return first, first + pd.DateOffset(months=self.months)
        end = pd.Timestamp(self.end if self.end is not None else yesterday()).normalize()
        stop = end + pd.Timedelta(days=1)
        return stop - pd.DateOffset(months=self.months), stop


def generate_records(config: SynthConfig = SynthConfig()) -> pd.DataFrame:
    """Generate hourly records of ``config.n_counters`` counters over ``config.months`` months.

    Returns:
        A frame with the export's 16 columns (``records.EXPORT_COLUMNS``, in order), one row per
        counter and local hour, ordered by time then counter name as the real export is. Values
        are strings as in the export, except ``Comptage horaire`` (int64, 0 or more).
    """
    rng = np.random.default_rng(config.seed)
    first, stop = config.period()
    hours = build_hours(first, stop)
    counters = build_counters(config.n_counters, first, rng)
    counts = draw_counts(hours, counters, rng)
    frame = to_export_frame(hours, counters, counts)
    logger.debug("generated %d records for %d counters", len(frame), len(counters))
    return frame


def build_hours(first: pd.Timestamp, stop: pd.Timestamp) -> pd.DatetimeIndex:
    """Every hour from local midnight of ``first`` to that of ``stop`` (excluded), Paris time.

    Built in UTC and converted, so daylight-saving days get 23 or 25 local hours, the repeated
    October hour appearing once with each offset, as in the export.
    """
    start, end = (day.normalize().tz_localize(PARIS_TZ) for day in (first, stop))
    utc = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left")
    return utc.tz_convert(PARIS_TZ)


def to_export_frame(
    hours: pd.DatetimeIndex, counters: pd.DataFrame, counts: np.ndarray
) -> pd.DataFrame:
    """Lay the (hours x counters) grid out as export rows: time-major, counter-minor."""
    n_hours, n_counters = counts.shape
    hour_idx = np.repeat(np.arange(n_hours), n_counters)
    counter_idx = np.tile(np.arange(n_counters), n_hours)
    offsets = (hours.tz_localize(None) - hours.tz_convert("UTC").tz_localize(None)).total_seconds()
    offset_text = [f"+{int(s) // 3600:02d}:00" for s in offsets]
    stamps = hours.strftime("%Y-%m-%dT%H:%M:%S") + pd.Index(offset_text)
    months = [f"{FRENCH_MONTHS[m - 1]} {y}" for m, y in zip(hours.month, hours.year, strict=True)]

    def per_counter(column: str) -> np.ndarray:
        return counters[column].to_numpy(dtype=object)[counter_idx]

    columns = {
        "Identifiant du compteur": per_counter("counter_id"),
        "Nom du compteur": per_counter("name"),
        "Identifiant du site de comptage": per_counter("site_id"),
        "Nom du site de comptage": per_counter("site_name"),
        "Comptage horaire": counts.reshape(-1).astype(np.int64),
        "Date et heure de comptage": stamps.to_numpy(dtype=object)[hour_idx],
        "Date d'installation du site de comptage": per_counter("installed"),
        "Coordonnées géographiques": per_counter("coordinates"),
        "Identifiant technique compteur": per_counter("tech_id"),
        "mois_annee_comptage": np.asarray(months, dtype=object)[hour_idx],
    }
    for col in EXPORT_COLUMNS:
        columns.setdefault(col, np.full(n_hours * n_counters, "", dtype=object))
    # copy=False: the arrays are fresh, and consolidating 16 columns of 570k rows would double
    # the peak memory.
    return pd.DataFrame({col: columns[col] for col in EXPORT_COLUMNS}, copy=False)
