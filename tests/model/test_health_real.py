"""Counter health on the real Paris counts (Sept. 2020 - Aug. 2021), with faults injected by hand.

The data is ``BIKECOUNT_REAL_DATA``, by default ``../shared/data/paris-counters-2020-2021`` beside
the repository; without it these tests skip (the generated-data tests in
``tests/unit/test_health.py`` always run). Over three months with a city that changed (the
November 2020 lockdown, March's curfew, the reopening of 19 May 2021) three counters are broken
on purpose (zeros, a third of their counts, one value repeated); every other counter-day is
checked too, and a fault found where none was injected is a false alarm unless it is one of the
data's own real faults listed below (each looked at by hand: long runs of zeros, closures).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bikecount.data.io import read_records
from bikecount.health import FAULTS, HealthReport, check_health
from bikecount.records import (
    COUNT_COLUMN,
    COUNTER_COLUMN,
    PARIS_TZ,
    TIMESTAMP_COLUMN,
    parse_records,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(
    os.environ.get(
        "BIKECOUNT_REAL_DATA", ROOT.parent / "shared" / "data" / "paris-counters-2020-2021"
    )
)
FILES = ("reference.csv.gz", "current.csv.gz")

# The data's own faults in the months checked, as found by looking (both directions of a site):
# (site, first day, last day, what the counts show).
REAL_FAULTS = (
    ("Face au 4 avenue de la porte de Bagnolet", "2020-11-04", "2020-11-10",
     "both directions at a third of their level for five days, then ten hours of zeros"),
    ("Voie Georges Pompidou", "2021-02-01", "2021-03-31",
     "the lower quay closed by the Seine's flood in February, then no data from 13 to 31 March"),
    ("20 Avenue de Clichy", "2021-03-23", "2021-08-10",
     "one direction at a tenth to a third of its level from 23 March, then zeros for most of "
     "four months"),
)  # fmt: skip

# The counters broken on purpose, and the days of each month they break.
OUTAGE, LOW, STUCK = (
    "Totem 73 boulevard de Sébastopol S-N",
    "Totem 64 Rue de Rivoli E-O",
    "27 quai de la Tournelle SE-NO",
)
TOUCHED = (OUTAGE, LOW, STUCK)
MONTHS = (date(2020, 11, 1), date(2021, 3, 1), date(2021, 5, 1))
BREAK_ON = 10  # the day of the month the injected faults start


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    paths = [FOLDER / name for name in FILES]
    if not all(path.is_file() for path in paths):
        pytest.skip(f"no real data in {FOLDER} (set BIKECOUNT_REAL_DATA to the folder)")
    raw = pd.concat([read_records(path) for path in paths], ignore_index=True)
    return parse_records(raw, require_count=True).frame


def hour(day: date, at: int) -> pd.Timestamp:
    return pd.Timestamp(day.isoformat()).tz_localize(PARIS_TZ) + pd.Timedelta(hours=at)


def inject(frame: pd.DataFrame, counter: str, start: pd.Timestamp, stop: pd.Timestamp, change):
    rows = (
        (frame[COUNTER_COLUMN] == counter)
        & (frame[TIMESTAMP_COLUMN] >= start)
        & (frame[TIMESTAMP_COLUMN] < stop)
    )
    frame.loc[rows, COUNT_COLUMN] = change(frame.loc[rows, COUNT_COLUMN].to_numpy())


def broken_on_purpose(real: pd.DataFrame) -> pd.DataFrame:
    """The real counts with, each month from day BREAK_ON: OUTAGE at zero from 10:00 for three
    days, LOW at 0.3 times its counts for four days, STUCK at 42 from 06:00 to 14:00 the next day.
    """
    frame = real.copy()
    for month in MONTHS:
        first = month.replace(day=BREAK_ON)
        inject(frame, OUTAGE, hour(first, 10), hour(first, 72), np.zeros_like)
        inject(frame, LOW, hour(first, 0), hour(first, 96), lambda c: np.round(c * 0.3))
        day = first + timedelta(days=1)
        inject(frame, STUCK, hour(day, 6), hour(day, 14), lambda c: np.full_like(c, 42))
    return frame


@pytest.fixture(scope="module")
def reports(real: pd.DataFrame) -> dict[date, HealthReport]:
    """A report for every day of the months checked, on the counts broken on purpose."""
    frame = broken_on_purpose(real)
    days = [m + timedelta(days=i) for m in MONTHS for i in range(_days_in(m))]
    # Seven weeks of history are enough: slicing them first keeps each check small.
    return {
        day: check_health(frame[frame[TIMESTAMP_COLUMN] >= hour(day - timedelta(days=60), 0)], day)
        for day in days
    }


def _days_in(month: date) -> int:
    return ((month.replace(day=28) + timedelta(days=4)).replace(day=1) - month).days


def is_real_fault(counter: str, day: date) -> bool:
    return any(
        counter.startswith(site) and date.fromisoformat(first) <= day <= date.fromisoformat(last)
        for site, first, last, _ in REAL_FAULTS
    )


@pytest.mark.parametrize("month", MONTHS, ids=[m.strftime("%Y-%m") for m in MONTHS])
def test_injected_faults_are_found_with_their_status_and_start(
    reports: dict[date, HealthReport], month: date
) -> None:
    first = month.replace(day=BREAK_ON)
    for offset in (0, 1, 2):
        outage = reports[first + timedelta(days=offset)].status_of(OUTAGE)
        assert (outage.status, outage.since) == ("outage", hour(first, 10)), outage
    for offset in (0, 1, 2, 3):
        low = reports[first + timedelta(days=offset)].status_of(LOW)
        assert low.status == "low" and low.since is not None, low
        assert low.since.date() == first, low
    stuck = reports[first + timedelta(days=1)].status_of(STUCK)
    assert (stuck.status, stuck.since) == ("stuck", hour(first + timedelta(days=1), 6)), stuck
    assert stuck.hours == tuple(range(6, 14))
    # And they end: the day after each fault, the counter is itself again.
    assert reports[first + timedelta(days=4)].status_of(LOW).status in ("ok", "low")
    assert reports[first + timedelta(days=5)].status_of(OUTAGE).status == "ok"
    assert reports[first + timedelta(days=2)].status_of(STUCK).status == "ok"


def test_false_alarms_on_the_counters_left_alone_are_rare(
    reports: dict[date, HealthReport], figures: list[str]
) -> None:
    checked, real_faults, false_alarms = 0, 0, []
    for day, report in reports.items():
        for health in report.counters:
            if health.counter in TOUCHED:
                continue
            checked += 1
            if health.status in FAULTS:
                if is_real_fault(health.counter, day):
                    real_faults += 1
                else:
                    false_alarms.append(f"{day} {health.counter}: {health.status}, {health.reason}")
    rate = len(false_alarms) / checked
    kinds = Counter(alarm.split(": ")[1].split(",")[0] for alarm in false_alarms)
    figures.append(
        f"counter health, real data ({len(reports)} days of 2020-11, 2021-03, 2021-05): "
        f"{len(false_alarms)} false alarms in {checked} counter-days left alone ({rate:.2%}; "
        f"{dict(kinds)}), {real_faults} flags on the data's own faults"
    )
    assert rate < 0.005, "\n".join(false_alarms)
    assert real_faults > 0  # the data's own outages are found too


@pytest.mark.parametrize(
    "day",
    [date(2020, 10, 30), date(2020, 11, 2), date(2021, 5, 19), date(2021, 5, 20)],
    ids=["lockdown", "lockdown+3", "reopening", "reopening+1"],
)
def test_a_real_city_wide_shift_flags_no_counter(real: pd.DataFrame, day: date) -> None:
    """The second lockdown (30 October 2020) and the terraces' reopening (19 May 2021) moved
    every counter together: the city factor moves, no counter is flagged low or high."""
    report = check_health(real[real[TIMESTAMP_COLUMN] >= hour(day - timedelta(days=60), 0)], day)
    flagged = [
        (h.counter, h.status)
        for h in report.counters
        if h.status in FAULTS and not is_real_fault(h.counter, day)
    ]
    assert flagged == []
    assert report.city_factor is not None


def test_every_counter_one_and_a_half_times_busier_flags_no_counter(real: pd.DataFrame) -> None:
    day = date(2021, 3, 17)
    window = real[real[TIMESTAMP_COLUMN] >= hour(day - timedelta(days=60), 0)].copy()
    before = check_health(window, day)
    shifted = window[TIMESTAMP_COLUMN] >= hour(day - timedelta(days=2), 0)
    window.loc[shifted, COUNT_COLUMN] = np.round(window.loc[shifted, COUNT_COLUMN] * 1.5)
    after = check_health(window, day)
    assert after.city_factor == pytest.approx(before.city_factor * 1.5, rel=0.05)
    assert [(h.counter, h.status) for h in after.faults()] == [
        (h.counter, h.status) for h in before.faults()
    ]
