"""Counter health on generated data, with faults injected by hand: always runs (no real data).

The generated counters follow the real ones' levels and rhythms; the faults are the three a
counter shows when it breaks (zeros, a fraction of its counts, one value repeated) and the shift a
city shows when it changes (every counter at once).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers
from bikecount.cli import app
from bikecount.cli.health import FAULT_EXIT_CODE
from bikecount.data.io import write_records
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.health import (
    EXPECTED_COLUMN,
    LOWER_COLUMN,
    UPPER_COLUMN,
    HealthInputError,
    HealthParams,
    check_health,
)
from bikecount.records import COUNT_COLUMN, COUNTER_COLUMN, PARIS_TZ, TIMESTAMP_COLUMN

# 12 counters over three months: seven weeks of history before the checked days.
CONFIG = SynthConfig(start="2021-01-04", months=3, n_counters=12, seed=3)
DAY = date(2021, 3, 24)  # a Wednesday, no holiday


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return helpers.generate_canonical(CONFIG)


@pytest.fixture(scope="module")
def healthy(frame: pd.DataFrame) -> list[str]:
    """Counters of the generated set without the generator's own outages around DAY."""
    window = frame[frame[TIMESTAMP_COLUMN] >= hour(DAY - timedelta(days=55), 0)]
    zero_days = (
        window.groupby([COUNTER_COLUMN, window[TIMESTAMP_COLUMN].dt.date])[COUNT_COLUMN].sum() == 0
    )
    broken = set(zero_days[zero_days].index.get_level_values(0))
    return sorted(set(frame[COUNTER_COLUMN]) - broken)


def hour(day: date, at: int) -> pd.Timestamp:
    return pd.Timestamp(day.isoformat()).tz_localize(PARIS_TZ) + pd.Timedelta(hours=at)


def injected(
    frame: pd.DataFrame, counter: str | None, start: pd.Timestamp, stop: pd.Timestamp, change
) -> pd.DataFrame:
    """A copy of ``frame`` whose counts of ``counter`` (every counter when None) from ``start``
    to ``stop`` (excluded) are ``change(counts)``."""
    out = frame.copy()
    rows = (out[TIMESTAMP_COLUMN] >= start) & (out[TIMESTAMP_COLUMN] < stop)
    if counter is not None:
        rows &= out[COUNTER_COLUMN] == counter
    out.loc[rows, COUNT_COLUMN] = change(out.loc[rows, COUNT_COLUMN].to_numpy())
    return out


def test_an_untouched_day_is_ok_for_every_healthy_counter(
    frame: pd.DataFrame, healthy: list[str]
) -> None:
    report = check_health(frame, DAY)
    assert len(healthy) >= 8
    assert {report.status_of(c).status for c in healthy} == {"ok"}
    health = report.status_of(healthy[0])
    assert health.since is None and health.lower < health.expected < health.upper


def test_a_run_of_zeros_is_an_outage_since_its_first_hour(
    frame: pd.DataFrame, healthy: list[str]
) -> None:
    start = hour(DAY - timedelta(days=2), 8)
    broken = injected(frame, healthy[0], start, hour(DAY, 24), np.zeros_like)
    health = check_health(broken, DAY).status_of(healthy[0])
    assert health.status == "outage"
    assert health.since == start
    assert health.observed == 0 and health.expected > 100
    assert health.hours == tuple(range(24))


def test_a_counter_without_records_on_the_day_is_an_outage(frame: pd.DataFrame) -> None:
    counter = sorted(set(frame[COUNTER_COLUMN]))[1]
    gone = frame[~((frame[COUNTER_COLUMN] == counter) & (frame[TIMESTAMP_COLUMN] >= hour(DAY, 6)))]
    health = check_health(gone, DAY).status_of(counter)
    assert health.status == "outage" and health.since == hour(DAY, 6)
    assert "no data" in health.reason


def test_counts_cut_to_a_third_for_days_are_low_since_the_first_day(
    frame: pd.DataFrame, healthy: list[str]
) -> None:
    start = DAY - timedelta(days=3)
    broken = injected(frame, healthy[1], hour(start, 0), hour(DAY, 24), lambda c: np.round(c * 0.3))
    report = check_health(broken, DAY)
    health = report.status_of(healthy[1])
    assert health.status == "low"
    assert health.since is not None and health.since.date() == start
    assert health.observed < health.lower
    assert [c.counter for c in report.faults()] == [healthy[1]]


def test_counts_tripled_are_high(frame: pd.DataFrame, healthy: list[str]) -> None:
    broken = injected(frame, healthy[2], hour(DAY, 0), hour(DAY, 24), lambda c: c * 3)
    health = check_health(broken, DAY).status_of(healthy[2])
    assert health.status == "high" and health.since is not None
    assert health.since.date() == DAY and health.observed > health.upper


def test_one_value_repeated_for_hours_is_stuck(frame: pd.DataFrame, healthy: list[str]) -> None:
    start = hour(DAY, 7)
    broken = injected(frame, healthy[3], start, hour(DAY, 16), lambda c: np.full_like(c, 23))
    health = check_health(broken, DAY).status_of(healthy[3])
    assert health.status == "stuck"
    assert health.since == start and health.hours == tuple(range(7, 16))
    assert "(23)" in health.reason


def test_the_whole_city_one_and_a_half_times_busier_is_no_fault(frame: pd.DataFrame) -> None:
    start = hour(DAY - timedelta(days=3), 0)
    busier = injected(frame, None, start, hour(DAY, 24), lambda c: np.round(c * 1.5))
    report, untouched = check_health(busier, DAY), check_health(frame, DAY)
    assert report.city_factor / untouched.city_factor == pytest.approx(1.5, rel=0.05)
    assert [c.counter for c in report.faults()] == [c.counter for c in untouched.faults()]


def test_a_forecast_replaces_the_profile_and_its_interval_the_band(
    frame: pd.DataFrame, healthy: list[str]
) -> None:
    counter = healthy[4]
    day_rows = frame[
        (frame[COUNTER_COLUMN] == counter)
        & (frame[TIMESTAMP_COLUMN] >= hour(DAY, 0))
        & (frame[TIMESTAMP_COLUMN] < hour(DAY, 24))
    ]
    exact = day_rows[[COUNTER_COLUMN, TIMESTAMP_COLUMN]].assign(
        **{EXPECTED_COLUMN: day_rows[COUNT_COLUMN].to_numpy()}
    )
    assert check_health(frame, DAY, expected=exact).status_of(counter).status == "ok"
    fourfold = exact.assign(**{EXPECTED_COLUMN: exact[EXPECTED_COLUMN] * 4})
    assert check_health(frame, DAY, expected=fourfold).status_of(counter).status == "low"
    # An interval wide enough to hold a quarter of the forecast: no longer a fault.
    wide = fourfold.assign(
        **{LOWER_COLUMN: fourfold[EXPECTED_COLUMN] / 8, UPPER_COLUMN: fourfold[EXPECTED_COLUMN]}
    )
    assert check_health(frame, DAY, expected=wide).status_of(counter).status == "ok"


def test_too_little_history_says_unknown_not_ok(frame: pd.DataFrame) -> None:
    recent = frame[frame[TIMESTAMP_COLUMN] >= hour(DAY - timedelta(days=8), 0)]
    statuses = {c.status for c in check_health(recent, DAY).counters}
    assert statuses <= {"unknown", "outage"} and "unknown" in statuses


def test_bad_input_is_a_precise_error(frame: pd.DataFrame) -> None:
    with pytest.raises(HealthInputError, match=r"no counts on 2022-01-01 .*they run from 2021"):
        check_health(frame, date(2022, 1, 1))
    with pytest.raises(HealthInputError, match="without the column"):
        check_health(frame.drop(columns=[COUNT_COLUMN]), DAY)
    with pytest.raises(ValueError, match="lookback_days"):
        HealthParams(lookback_days=0)


def test_the_report_as_json(frame: pd.DataFrame) -> None:
    payload = check_health(frame, DAY).to_dict()
    assert payload["date"] == DAY.isoformat()
    first = payload["counters"][0]
    assert {"counter", "status", "since", "expected", "observed", "reason"} <= set(first)
    json.dumps(payload)  # plain values only


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated export, in its French spelling, with one counter at zero on DAY."""
    raw = generate_records(CONFIG)
    broken = (raw["Nom du compteur"] == raw["Nom du compteur"].iloc[0]) & raw[
        "Date et heure de comptage"
    ].str.startswith(DAY.isoformat())
    raw.loc[broken, "Comptage horaire"] = 0
    return write_records(raw, tmp_path_factory.mktemp("health") / "r.csv")


def test_command_prints_json_and_exits_0_even_with_faults(export_file: Path) -> None:
    args = ["health", "--data", str(export_file), "--date", DAY.isoformat(), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["date"] == DAY.isoformat() and len(payload["counters"]) == CONFIG.n_counters
    first = payload["counters"][0]
    assert first["status"] == "outage" and first["since"] == f"{DAY.isoformat()}T00:00:00+01:00"
    assert first["observed"] == 0 and first["expected"] > 0
    strict = CliRunner().invoke(app, [*args, "--fail-on-fault"])
    assert strict.exit_code == FAULT_EXIT_CODE


def test_command_prints_a_table(export_file: Path) -> None:
    result = CliRunner().invoke(
        app, ["health", "--data", str(export_file), "--date", DAY.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "counter health on 2021-03-24" in result.output and "status" in result.output


@pytest.mark.parametrize(
    ("day", "message"),
    [("2019-01-01", "no counts on 2019-01-01"), ("01/02/2021", "Invalid value for '--date'")],
)
def test_command_errors_are_one_line_without_traceback(
    export_file: Path, day: str, message: str
) -> None:
    result = CliRunner().invoke(app, ["health", "--data", str(export_file), "--date", day])
    assert result.exit_code in (1, 2)
    shown = " ".join(result.output.split())
    assert message in shown and "Traceback" not in shown


def test_command_names_a_missing_count_column(tmp_path: Path) -> None:
    raw = generate_records(SynthConfig(start="2021-03-01", months=1, n_counters=2, seed=1))
    path = write_records(raw.drop(columns=["Comptage horaire"]), tmp_path / "nocount.csv")
    result = CliRunner().invoke(app, ["health", "--data", str(path), "--date", "2021-03-10"])
    assert result.exit_code == 1
    assert "Comptage horaire" in " ".join(result.output.split())
