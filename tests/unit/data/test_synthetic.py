"""The synthetic generator: the export's exact format, determinism, and the real data's patterns."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bikecount.cli import app
from bikecount.data.io import read_records
from bikecount.data.paris_counters import COUNTER_TABLE, load_paris_counters
from bikecount.data.synthetic import FRENCH_MONTHS, SynthConfig, generate_records
from bikecount.records import EXPORT_COLUMNS, parse_records

SMALL = SynthConfig(start="2021-03-01", months=2, n_counters=8, seed=7)
DIRECTION_PAIRS = {"N-S": "S-N", "E-O": "O-E", "NE-SO": "SO-NE", "NO-SE": "SE-NO"}


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate_records(SMALL)


@pytest.fixture(scope="module")
def default() -> pd.DataFrame:
    return generate_records(SynthConfig(end="2021-09-30"))  # Sep 2020 - Sep 2021


@pytest.fixture(scope="module")
def calendar(default: pd.DataFrame) -> pd.DataFrame:
    """Counts with their local wall-clock date, hour and weekday, read from the timestamp text."""
    stamp = default["Date et heure de comptage"]
    date = pd.to_datetime(stamp.str[:10], format="%Y-%m-%d")
    french = holidays.France(years=range(2020, 2022))
    return pd.DataFrame(
        {
            "counter": default["Nom du compteur"],
            "count": default["Comptage horaire"],
            "date": date,
            "month": stamp.str[:7],
            "hour": stamp.str[11:13].astype(int),
            "weekend": date.dt.weekday >= 5,
            "holiday": date.dt.date.isin(set(french)),
        }
    )


def test_columns_are_the_export_columns_in_order(small: pd.DataFrame) -> None:
    assert tuple(small.columns) == EXPORT_COLUMNS


def test_records_pass_the_contract(small: pd.DataFrame) -> None:
    parsed = parse_records(small, require_count=True)
    assert parsed.issues == []
    assert len(parsed.frame) == len(small)


def test_one_row_per_counter_and_hour(small: pd.DataFrame) -> None:
    assert small["Nom du compteur"].nunique() == SMALL.n_counters
    assert not small.duplicated(["Nom du compteur", "Date et heure de comptage"]).any()
    per_counter = small.groupby("Nom du compteur").size()
    assert per_counter.nunique() == 1
    assert per_counter.iloc[0] == (31 + 30) * 24 - 1  # March 2021 loses an hour to DST


def test_values_look_like_the_export(small: pd.DataFrame) -> None:
    counts = small["Comptage horaire"]
    assert counts.dtype == np.int64 and (counts >= 0).all()
    assert small["Identifiant du compteur"].str.fullmatch(r"\d{9}-\d{9}").all()
    assert small["Identifiant du site de comptage"].str.fullmatch(r"\d{9}").all()
    assert (
        small["Identifiant du compteur"].str[:9] == small["Identifiant du site de comptage"]
    ).all()
    assert small["Identifiant technique compteur"].str.fullmatch(r"Y(2|T)H\d{8}").all()
    installed = small["Date d'installation du site de comptage"]
    assert installed.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (installed < SMALL.start).all()
    pattern = r"\d{4}-\d{2}-\d{2}T\d{2}:00:00\+0[12]:00"
    assert small["Date et heure de comptage"].str.fullmatch(pattern).all()
    empty = ["Lien vers photo du site de comptage", "ID Photos", "url_sites", "type_dimage"]
    assert (small[empty] == "").all().all()


def test_coordinates_are_inside_paris(small: pd.DataFrame) -> None:
    parts = small["Coordonnées géographiques"].str.split(",", expand=True).astype(float)
    assert parts[0].between(48.815, 48.905).all()
    assert parts[1].between(2.25, 2.42).all()
    assert small["Coordonnées géographiques"].str.fullmatch(r"\d+\.\d{6},\d+\.\d{6}").all()


def test_each_site_has_two_opposite_directions(small: pd.DataFrame) -> None:
    counters = small.drop_duplicates("Nom du compteur")
    for site, group in counters.groupby("Nom du site de comptage"):
        directions = sorted(name.removeprefix(site + " ") for name in group["Nom du compteur"])
        assert len(directions) == 2
        assert DIRECTION_PAIRS.get(directions[0]) == directions[1]
        assert group["Coordonnées géographiques"].nunique() == 1


def test_odd_counter_count_is_honoured() -> None:
    frame = generate_records(SynthConfig(start="2021-06-01", months=1, n_counters=3))
    assert frame["Nom du compteur"].nunique() == 3


def test_rows_are_ordered_by_time_then_counter(small: pd.DataFrame) -> None:
    first_hour = small.iloc[: SMALL.n_counters]
    assert first_hour["Date et heure de comptage"].nunique() == 1
    assert first_hour["Date et heure de comptage"].iloc[0] == "2021-03-01T00:00:00+01:00"
    assert first_hour["Nom du compteur"].is_monotonic_increasing


def test_same_config_gives_the_same_frame(small: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_records(SMALL), small)


def test_another_seed_gives_other_values(small: pd.DataFrame) -> None:
    other = generate_records(SynthConfig(start=SMALL.start, months=2, n_counters=8, seed=8))
    assert len(other) == len(small)
    assert not np.array_equal(other["Comptage horaire"], small["Comptage horaire"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"months": 0},
        {"n_counters": 0},
        {"start": "not a date"},
        {"end": "2021-02-30"},
        {"start": "2021-01-01", "end": "2021-03-31"},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)


def local_days(frame: pd.DataFrame) -> tuple[str, str]:
    stamps = frame["Date et heure de comptage"]
    return stamps.iloc[0], stamps.iloc[-1]


def test_the_data_ends_on_the_end_day(default: pd.DataFrame) -> None:
    # 13 months that end on 2021-09-30 begin on 2020-09-01, and a month's end is kept whole.
    assert local_days(default) == ("2020-09-01T00:00:00+02:00", "2021-09-30T23:00:00+02:00")
    short = generate_records(SynthConfig(end="2021-03-31", months=1, n_counters=2))
    assert local_days(short) == ("2021-03-01T00:00:00+01:00", "2021-03-31T23:00:00+02:00")


def test_by_default_the_data_ends_yesterday_in_paris() -> None:
    frame = generate_records(SynthConfig(months=1, n_counters=2))

    yesterday = datetime.now(ZoneInfo("Europe/Paris")).date() - timedelta(days=1)
    assert local_days(frame)[1][:10] == yesterday.isoformat()


def test_the_same_end_and_seed_give_the_same_records(tmp_path: Path) -> None:
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        result = CliRunner().invoke(
            app,
            ["data", "synth", "--end", "2021-06-30", "--months", "1", "--counters", "3"]
            + ["--output", str(path)],
        )
        assert result.exit_code == 0, result.output

    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert local_days(read_records(paths[0]))[1] == "2021-06-30T23:00:00+02:00"


def test_synth_refuses_a_start_and_an_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "synth", "--start", "2021-01-01", "--end", "2021-06-30"]
    )

    assert result.exit_code == 1 and "not both" in result.output


def test_month_name_matches_the_timestamp(small: pd.DataFrame, default: pd.DataFrame) -> None:
    for frame in (small, default.iloc[::997]):
        stamp = frame["Date et heure de comptage"]
        expected = [
            f"{FRENCH_MONTHS[int(text[5:7]) - 1]} {text[:4]}" for text in stamp.drop_duplicates()
        ]
        actual = frame.loc[stamp.drop_duplicates().index, "mois_annee_comptage"].tolist()
        assert actual == expected
    assert {"septembre 2020", "août 2021", "février 2021"} <= set(default["mois_annee_comptage"])


def test_daylight_saving_days_have_23_and_25_hours(default: pd.DataFrame) -> None:
    stamp = default["Date et heure de comptage"]
    counters = default["Nom du compteur"].nunique()
    assert (stamp.str[:10] == "2021-03-28").sum() == 23 * counters
    assert (stamp.str[:10] == "2020-10-25").sum() == 25 * counters
    assert (stamp.str[:10] == "2021-06-01").sum() == 24 * counters
    repeated = stamp[stamp.str.startswith("2020-10-25T02")].drop_duplicates().tolist()
    assert repeated == ["2020-10-25T02:00:00+02:00", "2020-10-25T02:00:00+01:00"]
    assert not stamp.str.startswith("2021-03-28T02").any()


def test_overall_distribution_matches_the_real_data(default: pd.DataFrame) -> None:
    counts = default["Comptage horaire"]
    assert len(default) == 52 * (395 * 24)  # 13 months, Sept. 2020 to Sept. 2021, 52 counters
    assert 0.05 < (counts == 0).mean() < 0.15
    assert 15 <= counts.median() <= 40


def test_counters_have_very_different_volumes(default: pd.DataFrame) -> None:
    means = default.groupby("Nom du compteur")["Comptage horaire"].mean()
    assert means.min() < 5
    assert means.max() > 150


def test_weekday_commute_peak_beats_the_night(calendar: pd.DataFrame) -> None:
    weekday = calendar[~calendar["weekend"] & ~calendar["holiday"]]
    by_hour = weekday.groupby("hour")["count"].mean()
    assert by_hour[8] > 5 * by_hour[3]
    assert by_hour[18] > 5 * by_hour[3]
    assert by_hour[8] > by_hour[12] and by_hour[18] > by_hour[14]


def test_weekend_has_a_midday_hump(calendar: pd.DataFrame) -> None:
    by_hour = calendar[calendar["weekend"]].groupby("hour")["count"].mean()
    assert by_hour[13] > by_hour[8]
    assert by_hour[8] < calendar[~calendar["weekend"]].groupby("hour")["count"].mean()[8]


def test_public_holidays_are_quieter_than_that_months_weekdays(calendar: pd.DataFrame) -> None:
    workdays = calendar[~calendar["weekend"]]
    daily = workdays.groupby(["date", "month", "holiday"])["count"].mean().reset_index()
    holidays_on_weekdays = daily[daily["holiday"]]
    assert len(holidays_on_weekdays) >= 5
    normal_by_month = daily[~daily["holiday"]].groupby("month")["count"].mean()
    for _, day in holidays_on_weekdays.iterrows():
        assert day["count"] < normal_by_month[day["month"]], day["date"]


def test_august_dips_below_june(calendar: pd.DataFrame) -> None:
    by_month = calendar.groupby("month")["count"].mean()
    assert by_month["2021-08"] < by_month["2021-06"]
    assert by_month["2021-01"] < by_month["2021-06"]


def test_weather_makes_some_days_much_quieter(calendar: pd.DataFrame) -> None:
    workdays = calendar[~calendar["weekend"] & ~calendar["holiday"]]
    daily = workdays.groupby("date")["count"].sum()
    relative = daily / daily.rolling(15, center=True, min_periods=5).median()
    assert relative.min() < 0.6
    assert relative.quantile(0.5) == pytest.approx(1.0, abs=0.1)


def test_outages_are_runs_of_zeros(calendar: pd.DataFrame) -> None:
    longest = {}
    for counter, counts in calendar.groupby("counter")["count"]:
        zero = counts.to_numpy() == 0
        edges = np.flatnonzero(np.diff(np.r_[0, zero.astype(int), 0]))
        longest[counter] = int(np.max(edges[1::2] - edges[::2], initial=0))
    assert sum(run >= 48 for run in longest.values()) >= 2


def test_counter_names_follow_site_names(small: pd.DataFrame) -> None:
    direction = re.compile(r" (N-S|S-N|E-O|O-E|NE-SO|SO-NE|NO-SE|SE-NO)$")
    names = small["Nom du compteur"].drop_duplicates()
    sites = small.loc[names.index, "Nom du site de comptage"]
    assert (names.str.replace(direction, "", regex=True) == sites).all()


def test_counters_are_the_real_paris_counters(default: pd.DataFrame) -> None:
    table = load_paris_counters()
    assert len(table) == 52 and table["name"].is_unique
    counters = default.drop_duplicates("Nom du compteur").set_index("Nom du compteur")
    assert set(counters.index) == set(table["name"])
    sebastopol = counters.loc["Totem 73 boulevard de Sébastopol S-N"]
    assert sebastopol["Coordonnées géographiques"] == "48.863770,2.350960"
    assert sebastopol["Identifiant du compteur"] == "100057445-104057445"


def test_each_counter_keeps_its_own_level(calendar: pd.DataFrame) -> None:
    levels = load_paris_counters().set_index("name")["level"]
    means = calendar.groupby("counter")["count"].mean()
    # Outages and a year's growth move a counter's mean a little, never its rank by much.
    assert np.corrcoef(np.log(means[levels.index]), np.log(levels))[0, 1] > 0.95
    sebastopol = calendar[
        (calendar["counter"] == "Totem 73 boulevard de Sébastopol S-N")
        & ~calendar["weekend"]
        & ~calendar["holiday"]
        & (calendar["hour"] == 8)
    ]
    assert 300 < sebastopol["count"].median() < 1000


def test_a_small_config_takes_the_busiest_whole_sites(small: pd.DataFrame) -> None:
    table = load_paris_counters()
    assert set(small["Nom du compteur"]) == set(table["name"].iloc[: SMALL.n_counters])
    assert "Totem 73 boulevard de Sébastopol S-N" in set(small["Nom du compteur"])


def test_more_counters_than_the_table_adds_made_up_ones() -> None:
    frame = generate_records(SynthConfig(start="2021-06-01", months=1, n_counters=56))
    names = set(frame["Nom du compteur"])
    assert len(names) == 56 and set(load_paris_counters()["name"]) < names


def test_the_table_carries_its_licence() -> None:
    table = json.loads(COUNTER_TABLE.read_text(encoding="utf-8"))
    assert "ODbL" in table["licence"] and "Paris Open Data" in table["source"]
