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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

from bikecount.records import EXPORT_COLUMNS, PARIS_TZ

logger = logging.getLogger(__name__)

FRENCH_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip

# The real counters: aggregates of the Paris Open Data export (scripts/derive_paris_counters.py).
COUNTER_TABLE = Path(__file__).with_name("paris_counters.json")
COUNTER_TABLE_ATTRIBUTION = {
    "source": (
        "Paris Open Data, « Comptage vélo - Données compteurs » (comptage-velo-donnees-compteurs), "
        "https://opendata.paris.fr/explore/dataset/comptage-velo-donnees-compteurs/"
    ),
    "licence": "Open Database License (ODbL) v1.0, https://opendatacommons.org/licenses/odbl/1-0/",
    "attribution": "Contains information from Ville de Paris, made available under the ODbL.",
    "period": "2020-09-01 .. 2021-08-10 (hourly counts, local time)",
    "contents": (
        "per counter: ids, names, coordinates, installation date, mean hourly count outside "
        "outages, mean count by local hour on working days and on weekends and holidays "
        "(scaled to an average week's mean of 1); no individual count"
    ),
    "derived_by": "scripts/derive_paris_counters.py",
}

# Direction pairs of a site, by the axis of its street.
DIRECTIONS = {"N-S": "S-N", "E-O": "O-E", "NE-SO": "SO-NE", "NO-SE": "SE-NO"}

# Real Paris streets with a cycle lane: (name, lat, lon, axis).
STREETS: tuple[tuple[str, float, float, str], ...] = (
    ("boulevard de Sébastopol", 48.8638, 2.3510, "N-S"),
    ("rue de Rivoli", 48.8574, 2.3521, "E-O"),
    ("quai de la Tournelle", 48.8501, 2.3542, "NO-SE"),
    ("boulevard du Montparnasse", 48.8408, 2.3332, "E-O"),
    ("quai de l'Hôtel de Ville", 48.8537, 2.3570, "NO-SE"),
    ("avenue de Clichy", 48.8853, 2.3267, "NO-SE"),
    ("rue de Vaugirard", 48.8398, 2.3020, "NE-SO"),
    ("boulevard Diderot", 48.8460, 2.3754, "E-O"),
    ("quai de Grenelle", 48.8521, 2.2851, "NE-SO"),
    ("rue de Turbigo", 48.8650, 2.3539, "NE-SO"),
    ("quai François Mauriac", 48.8344, 2.3770, "NO-SE"),
    ("rue de Sèvres", 48.8464, 2.3153, "NE-SO"),
    ("rue d'Aubervilliers", 48.8905, 2.3689, "N-S"),
    ("quai de l'Oise", 48.8914, 2.3848, "NE-SO"),
    ("avenue de la porte de Bagnolet", 48.8646, 2.4097, "E-O"),
    ("quai d'Issy", 48.8342, 2.2654, "NE-SO"),
    ("quai de la Marne", 48.8917, 2.3853, "NE-SO"),
    ("quai de Bercy", 48.8295, 2.3870, "N-S"),
    ("quai d'Orsay", 48.8629, 2.3118, "E-O"),
    ("quai d'Austerlitz", 48.8420, 2.3673, "NO-SE"),
    ("cours la Reine", 48.8646, 2.3144, "E-O"),
    ("boulevard Saint-Michel", 48.8490, 2.3417, "N-S"),
    ("boulevard Voltaire", 48.8600, 2.3780, "NO-SE"),
    ("boulevard de Magenta", 48.8770, 2.3560, "NO-SE"),
    ("avenue des Champs-Élysées", 48.8698, 2.3075, "NO-SE"),
    ("rue La Fayette", 48.8760, 2.3500, "NE-SO"),
    ("boulevard Richard-Lenoir", 48.8600, 2.3710, "N-S"),
    ("avenue Denfert-Rochereau", 48.8380, 2.3360, "N-S"),
    ("boulevard de Ménilmontant", 48.8640, 2.3850, "N-S"),
    ("quai de Valmy", 48.8720, 2.3640, "N-S"),
    ("rue de Rennes", 48.8480, 2.3280, "NO-SE"),
    ("boulevard Saint-Germain", 48.8530, 2.3380, "E-O"),
    ("avenue d'Italie", 48.8230, 2.3570, "N-S"),
    ("boulevard de la Villette", 48.8800, 2.3720, "NO-SE"),
    ("avenue de la Grande Armée", 48.8760, 2.2870, "NO-SE"),
    ("quai de Jemmapes", 48.8730, 2.3660, "N-S"),
)
LAT_BOUNDS = (48.815, 48.905)
LON_BOUNDS = (2.25, 2.42)

# Mean hourly count across counters by local hour (real data, Sept. 2020 - Aug. 2021).
WEEKDAY_PROFILE = np.array(
    [11, 5.1, 2.7, 1.6, 1.5, 4.4, 14, 54, 159, 142, 66, 60,
     78, 79, 74, 74, 90, 132, 172, 152, 83, 43, 28, 22]
)  # fmt: skip
WEEKEND_PROFILE = np.array(
    [16, 11, 8.4, 4.8, 3.4, 3.6, 5.5, 10, 22, 38, 56, 73,
     88, 80, 88, 108, 116, 115, 96, 70, 46, 30, 20, 14.5]
)  # fmt: skip
# Day factors Monday..Sunday on top of the profiles (Tuesday-Thursday busiest, Sunday quietest).
WEEKDAY_FACTORS = np.array([0.93, 1.03, 1.04, 1.04, 0.96, 1.05, 0.95])
SUNDAY = 6
MORNING_HOURS = slice(6, 11)
EVENING_HOURS = slice(16, 21)
# How much of a counter's own night factor applies at each local hour (nightlife varies by street).
NIGHT_WEIGHT = np.array(
    [1, 1, 1, 1, 1, 0.7, 0.3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.5, 0.8, 1]
)  # fmt: skip
# Per-counter hourly means at these quantiles of the counter population (log-interpolated).
LEVEL_QUANTILES = np.array([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
LEVEL_VALUES = np.array([2.0, 13.0, 37.0, 54.0, 78.0, 145.0, 250.0])
NB_SHAPE = 20.0  # gamma shape of the negative binomial: variance = mu + mu^2 / NB_SHAPE


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


@lru_cache(maxsize=1)
def load_paris_counters() -> pd.DataFrame:
    """The shipped table of real Paris counters, busiest site first (both directions together).

    Returns:
        One row per counter: ``counter_id``, ``name``, ``site_id``, ``site_name``, ``installed``,
        ``coordinates``, ``tech_id``, ``level`` (mean hourly count) and the two 24-value profiles
        ``weekday_profile`` and ``weekend_profile`` (arrays, an average week's mean being 1).
    """
    table = json.loads(COUNTER_TABLE.read_text(encoding="utf-8"))
    frame = pd.DataFrame(table["counters"])
    for column in ("weekday_profile", "weekend_profile"):
        frame[column] = [np.asarray(values, dtype=float) for values in frame[column]]
    return frame


def build_counters(n_counters: int, start: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Counter metadata and behaviour, sorted by name: the ``n_counters`` busiest real counters,
    then made-up ones (two directions per site) when more are asked for than the table holds."""
    real = load_paris_counters().iloc[:n_counters]
    columns = [*real.columns]
    parts = [real]
    if n_counters > len(real):
        made_up = build_made_up_counters(n_counters - len(real), start, rng)
        made_up = made_up[~made_up["name"].isin(real["name"])]
        parts.append(made_up[columns])
    counters = pd.concat(parts, ignore_index=True)
    counters["growth"] = rng.normal(0.05, 0.03, len(counters))
    return counters.sort_values("name", kind="stable").reset_index(drop=True)


def build_made_up_counters(
    n_counters: int, start: pd.Timestamp, rng: np.random.Generator
) -> pd.DataFrame:
    """Made-up counters on real streets, with the real data's average rhythm, varied per counter."""
    sites = build_sites((n_counters + 1) // 2, start, rng)
    site_of = np.arange(n_counters) // 2
    reverse = np.arange(n_counters) % 2 == 1
    counters = sites.iloc[site_of].reset_index(drop=True)
    direction = np.where(reverse, counters["axis"].map(DIRECTIONS), counters["axis"])
    counters["name"] = counters["site_name"] + " " + direction
    style_new = counters["site_id"].str[-1].astype(int) % 2 == 0
    serial = counters["site_id"].str[3:]
    counters["counter_id"] = (
        counters["site_id"]
        + "-"
        + np.where(
            style_new,
            (353_200_000 + serial.astype(int) % 100_000 + reverse).astype(str),
            np.where(reverse, "103", "104") + serial.str[:6],
        )
    )
    counters["level"] = draw_levels(n_counters, rng)
    # The morning peak leans to one direction of a site and the evening peak to the other.
    lean = np.where(reverse, -1.0, 1.0) * rng.uniform(0.05, 0.25, n_counters)
    weekend = np.exp(rng.normal(0.0, 0.2, n_counters))
    night = np.exp(rng.normal(-0.5, 1.0, n_counters))
    weekday_profiles, weekend_profiles = made_up_profiles(lean, weekend, night)
    counters["weekday_profile"] = list(weekday_profiles)
    counters["weekend_profile"] = list(weekend_profiles)
    return counters


def made_up_profiles(
    lean: np.ndarray, weekend: np.ndarray, night: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weekday and weekend hourly profiles (counters x 24) from the real data's average ones.

    Normalised by the average week, so that a counter's ``level`` is its typical hourly mean.
    """
    norm = (5 * WEEKDAY_PROFILE.mean() + 2 * WEEKEND_PROFILE.mean()) / 7
    weekday = np.tile(WEEKDAY_PROFILE / norm, (len(lean), 1))
    weekday[:, MORNING_HOURS] *= 1 + lean[:, None]
    weekday[:, EVENING_HOURS] *= 1 - lean[:, None]
    weekend_profile = np.outer(weekend, WEEKEND_PROFILE / norm)
    night_factor = night[:, None] ** NIGHT_WEIGHT[None, :]
    return weekday * night_factor, weekend_profile * night_factor


def build_sites(n_sites: int, start: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Sites on real streets with distinct house numbers, ids, coordinates and install dates."""
    streets = [STREETS[i % len(STREETS)] for i in rng.permutation(max(n_sites, len(STREETS)))]
    streets = streets[:n_sites]
    numbers = 1 + rng.permutation(max(n_sites, 240))[:n_sites]
    prefix = rng.choice(["", "Face au ", "Totem "], size=n_sites, p=[0.6, 0.2, 0.2])
    site_ids = 100_000_000 + rng.choice(70_000, size=n_sites, replace=False)
    lat = np.array([s[1] for s in streets]) + rng.normal(0.0, 0.0012, n_sites)
    lon = np.array([s[2] for s in streets]) + rng.normal(0.0, 0.0012, n_sites)
    lat, lon = np.clip(lat, *LAT_BOUNDS), np.clip(lon, *LON_BOUNDS)
    installed = start - pd.to_timedelta(rng.integers(30, 2600, n_sites), unit="D")
    serials = rng.integers(0, 1_000_000, n_sites)
    tech_ids = [
        f"{'YTH' if p == 'Totem ' else 'Y2H'}{day.year % 100:02d}{serial:06d}"
        for p, day, serial in zip(prefix, installed, serials, strict=True)
    ]
    names = [f"{p}{n} {s[0]}" for p, n, s in zip(prefix, numbers, streets, strict=True)]
    return pd.DataFrame(
        {
            "site_name": names,
            "site_id": site_ids.astype(str),
            "axis": [s[3] for s in streets],
            "coordinates": [f"{a:.6f},{o:.6f}" for a, o in zip(lat, lon, strict=True)],
            "installed": installed.strftime("%Y-%m-%d"),
            "tech_id": tech_ids,
        }
    )


def draw_levels(n_counters: int, rng: np.random.Generator) -> np.ndarray:
    """Per-counter hourly means spread over the real range, the two directions of a site alike.

    Stratified quantiles make every config of a few dozen counters span quiet (~2/h) to busy
    (~200/h) counters; consecutive ranks are paired into sites, since both directions of a street
    carry similar traffic.
    """
    quantiles = (np.arange(n_counters) + rng.uniform(size=n_counters)) / n_counters
    levels = np.exp(np.interp(quantiles, LEVEL_QUANTILES, np.log(LEVEL_VALUES)))
    site = np.arange(n_counters) // 2
    site_rank = rng.permutation(site.max() + 1)[site]
    order = np.argsort(site_rank * 2 + rng.uniform(size=n_counters))
    by_counter = np.empty(n_counters)
    by_counter[order] = levels  # counters ordered by site rank take the ascending levels
    return by_counter


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
