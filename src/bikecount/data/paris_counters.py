"""The counters of the synthetic generator (:mod:`bikecount.data.synthetic`).

The real Paris counters come first, read from the table of aggregates shipped with the package
(``paris_counters.json``: ids, names, coordinates, installation dates, each one's hourly level and
its weekday and weekend rhythm); when more are asked for, made-up counters follow, two directions
per site on real streets, with the real data's average rhythm varied per counter.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

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
MORNING_HOURS = slice(6, 11)
EVENING_HOURS = slice(16, 21)
# How much of a counter's own night factor applies at each local hour (nightlife varies by street).
NIGHT_WEIGHT = np.array(
    [1, 1, 1, 1, 1, 0.7, 0.3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0.5, 0.8, 1]
)  # fmt: skip
# Per-counter hourly means at these quantiles of the counter population (log-interpolated).
LEVEL_QUANTILES = np.array([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
LEVEL_VALUES = np.array([2.0, 13.0, 37.0, 54.0, 78.0, 145.0, 250.0])


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
