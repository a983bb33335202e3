"""Re-derive the shipped table of real Paris counters from the real export files.

The generator (``bikecount.data.synthetic``) draws counts for the real Paris counters from a small
metadata table, ``src/bikecount/data/paris_counters.json``: names, ids, coordinates, installation
dates, each counter's hourly level and its weekday and weekend rhythm. This script makes that table
from files in the Open Data export schema (by default the 2020-2021 extract in
``../shared/data/paris-counters-2020-2021``, or ``BIKECOUNT_REAL_DATA``). Only aggregates leave the
files: no count of any hour is copied.

    .venv/bin/python scripts/derive_paris_counters.py [--data DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import holidays
import numpy as np
import pandas as pd

from bikecount.cleaning import outage_mask
from bikecount.data.paris_counters import COUNTER_TABLE, COUNTER_TABLE_ATTRIBUTION
from bikecount.records import parse_records

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_DATA = DEFAULT_DATA / "paris-counters-2020-2021"
FILES = ("reference.csv.gz", "current.csv.gz")
META = {
    "counter_id": "Identifiant du compteur",
    "name": "Nom du compteur",
    "site_id": "Identifiant du site de comptage",
    "site_name": "Nom du site de comptage",
    "installed": "Date d'installation du site de comptage",
    "coordinates": "Coordonnées géographiques",
    "tech_id": "Identifiant technique compteur",
}


def read_export(folder: Path) -> pd.DataFrame:
    frames = [pd.read_csv(folder / name, sep=";", dtype=str) for name in FILES]
    return pd.concat(frames, ignore_index=True)


def derive_table(raw: pd.DataFrame) -> list[dict[str, object]]:
    """One entry per counter: metadata, hourly level and normalised profiles, busiest site first.

    The level is the counter's mean hourly count outside outages (runs of 24 zero hours or more);
    the profiles are its mean count by local hour on working days and on weekends and public
    holidays, scaled so that an average week's mean is 1 (the level carries the volume).
    """
    parsed = parse_records(raw, require_count=True).frame
    parsed = parsed[~outage_mask(parsed)]
    local = parsed["timestamp"]
    french = holidays.France(years=range(local.dt.year.min(), local.dt.year.max() + 1))
    off = (local.dt.weekday >= 5) | local.dt.date.isin(set(french))
    by_hour = (
        parsed.assign(off=off.to_numpy(), hour=local.dt.hour.to_numpy())
        .groupby(["counter", "off", "hour"])["count"]
        .mean()
    )
    meta = raw.drop_duplicates(META["name"]).set_index(META["name"])
    entries = []
    for counter, level in parsed.groupby("counter")["count"].mean().items():
        weekday = by_hour.loc[(counter, False)].reindex(range(24)).to_numpy(float)
        weekend = by_hour.loc[(counter, True)].reindex(range(24)).to_numpy(float)
        norm = (5 * weekday.mean() + 2 * weekend.mean()) / 7
        row = meta.loc[counter]
        entries.append(
            {
                **{key: str(row[column]) for key, column in META.items() if key != "name"},
                "name": str(counter),
                "level": round(float(level), 2),
                "weekday_profile": [round(float(v), 3) for v in weekday / norm],
                "weekend_profile": [round(float(v), 3) for v in weekend / norm],
            }
        )
    site_level = pd.Series({e["name"]: e["level"] for e in entries})
    site_of = {e["name"]: e["site_id"] for e in entries}
    site_mean = site_level.groupby(site_of).mean()
    # Busiest site first, its two directions side by side: a config of n counters takes the
    # n busiest, whole sites where n is even.
    entries.sort(key=lambda e: (-site_mean[e["site_id"]], e["site_id"], e["name"]))
    return entries


def format_table(entries: list[dict[str, object]]) -> str:
    """The attribution, then one counter a line: short enough to review in a diff."""
    head = json.dumps(COUNTER_TABLE_ATTRIBUTION, ensure_ascii=False, indent=1)[:-2]
    rows = ",\n".join("  " + json.dumps(entry, ensure_ascii=False) for entry in entries)
    return f'{head},\n "counters": [\n{rows}\n ]\n}}\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("BIKECOUNT_REAL_DATA", DEFAULT_DATA))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--output", type=Path, default=COUNTER_TABLE)
    args = parser.parse_args()
    entries = derive_table(read_export(args.data))
    args.output.write_text(format_table(entries), encoding="utf-8")
    levels = np.array([e["level"] for e in entries])
    print(f"{len(entries)} counters, hourly levels {levels.min():.1f} to {levels.max():.1f}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
