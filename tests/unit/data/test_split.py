"""The temporal split and the test sample, on small hand-made frames in the export schema."""

from __future__ import annotations

import pandas as pd
import pytest

from bikecount.data.split import sample_rows, split_by_time
from bikecount.records import COUNTER, EXPORT_COLUMNS, TIMESTAMP, parse_timestamps

COUNTERS = ("10 rue Exemple N-S", "10 rue Exemple S-N")


def make_export_frame(start: str = "2021-03-27", days: int = 3) -> pd.DataFrame:
    """2 counters x every hour of ``days`` local days, as strings in the export's form.

    The default period spans the night of 2021-03-28, when Paris skips 02:00 (DST), so
    timestamps such as ``2021-03-28T01:00:00+01:00`` and ``2021-03-28T03:00:00+02:00`` appear.
    Rows are shuffled so that the split has to sort them.
    """
    first = pd.Timestamp(start, tz="Europe/Paris")
    last = first + pd.DateOffset(days=days)
    hours = pd.date_range(
        first.tz_convert("UTC"), last.tz_convert("UTC"), freq="h", inclusive="left"
    )
    local = hours.tz_convert("Europe/Paris")
    rows = []
    for ts in local:
        for i, counter in enumerate(COUNTERS):
            row = dict.fromkeys(EXPORT_COLUMNS, "")
            row.update(
                {
                    "Identifiant du compteur": f"100-{i}",
                    COUNTER: counter,
                    "Identifiant du site de comptage": "100",
                    "Nom du site de comptage": "10 rue Exemple",
                    "Comptage horaire": str(ts.hour + i),
                    TIMESTAMP: ts.isoformat(),
                    "Coordonnées géographiques": "48.8566,2.3522",
                }
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(EXPORT_COLUMNS)).sample(frac=1.0, random_state=0)


def times_of(frame: pd.DataFrame) -> pd.Series:
    return parse_timestamps(frame[TIMESTAMP])


def as_sorted_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(frame.itertuples(index=False, name=None))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return make_export_frame()


def test_dst_night_is_in_the_fixture(raw: pd.DataFrame) -> None:
    stamps = set(raw[TIMESTAMP])
    assert "2021-03-28T01:00:00+01:00" in stamps
    assert "2021-03-28T03:00:00+02:00" in stamps
    assert len(raw) == 2 * (3 * 24 - 1)  # the skipped hour does not exist


@pytest.mark.parametrize("kwargs", [{"fraction": 0.7}, {"fraction": 0.1}, {"cutoff": "2021-03-28"}])
def test_split_loses_no_row_and_has_no_overlap(raw: pd.DataFrame, kwargs: dict) -> None:
    reference, current = split_by_time(raw, **kwargs)

    assert len(reference) > 0 and len(current) > 0
    assert as_sorted_rows(pd.concat([reference, current])) == as_sorted_rows(raw)
    assert not set(reference[TIMESTAMP]) & set(current[TIMESTAMP])


@pytest.mark.parametrize(
    "kwargs", [{"fraction": 0.7}, {"fraction": 0.33}, {"cutoff": "2021-03-29"}]
)
def test_split_keeps_all_counters_of_an_hour_together_in_time_order(
    raw: pd.DataFrame, kwargs: dict
) -> None:
    reference, current = split_by_time(raw, **kwargs)

    assert times_of(reference).max() < times_of(current).min()
    for part in (reference, current):
        assert times_of(part).is_monotonic_increasing
        assert (part.groupby(TIMESTAMP)[COUNTER].nunique() == len(COUNTERS)).all()


def test_split_keeps_the_input_columns_and_values(raw: pd.DataFrame) -> None:
    reference, current = split_by_time(raw)

    for part in (reference, current):
        assert list(part.columns) == list(raw.columns)
        assert part[TIMESTAMP].map(type).eq(str).all()  # values untouched, not parsed
    assert list(reference.index) == list(range(len(reference)))


def test_cutoff_date_is_local_midnight(raw: pd.DataFrame) -> None:
    reference, current = split_by_time(raw, cutoff="2021-03-28")

    assert reference[TIMESTAMP].iloc[-1] == "2021-03-27T23:00:00+01:00"
    assert current[TIMESTAMP].iloc[0] == "2021-03-28T00:00:00+01:00"


def test_cutoff_with_an_offset_is_an_exact_instant(raw: pd.DataFrame) -> None:
    reference, current = split_by_time(raw, cutoff="2021-03-28T03:00:00+02:00")

    assert reference[TIMESTAMP].iloc[-1] == "2021-03-28T01:00:00+01:00"
    assert current[TIMESTAMP].iloc[0] == "2021-03-28T03:00:00+02:00"


def test_fraction_is_a_share_of_the_time_span(raw: pd.DataFrame) -> None:
    times = times_of(raw)
    span = times.max() - times.min()

    reference, current = split_by_time(raw, fraction=0.5)

    boundary = times.min() + span * 0.5
    assert times_of(reference).max() < boundary <= times_of(current).min()


def test_split_accepts_snake_case_columns(raw: pd.DataFrame) -> None:
    snake = raw.rename(columns={TIMESTAMP: "date_et_heure_de_comptage"})

    reference, current = split_by_time(snake, fraction=0.5)

    assert "date_et_heure_de_comptage" in reference.columns
    assert len(reference) + len(current) == len(raw)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_fraction_outside_zero_one_is_refused(raw: pd.DataFrame, fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        split_by_time(raw, fraction=fraction)


@pytest.mark.parametrize(
    "cutoff", ["2021-03-27", "2020-01-01", "2021-03-30T00:00", "2022-01-01T00:00:00+01:00"]
)
def test_cutoff_outside_the_data_is_refused(raw: pd.DataFrame, cutoff: str) -> None:
    # 2021-03-27 is the first instant: nothing would be before it.
    with pytest.raises(ValueError, match="outside the data's range"):
        split_by_time(raw, cutoff=cutoff)


@pytest.mark.parametrize("cutoff", ["tomorrow", "2021-13-01", ""])
def test_cutoff_that_is_not_a_date_is_refused(raw: pd.DataFrame, cutoff: str) -> None:
    with pytest.raises(ValueError, match="not a date"):
        split_by_time(raw, cutoff=cutoff)


def test_cutoff_in_the_skipped_dst_hour_is_refused(raw: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="daylight-saving"):
        split_by_time(raw, cutoff="2021-03-28T02:30")


def test_unparsable_timestamps_are_refused(raw: pd.DataFrame) -> None:
    broken = raw.copy()
    broken.iloc[3, broken.columns.get_loc(TIMESTAMP)] = "yesterday"

    with pytest.raises(ValueError, match="no valid timestamp"):
        split_by_time(broken)


def test_single_instant_cannot_be_split(raw: pd.DataFrame) -> None:
    one_hour = raw[raw[TIMESTAMP] == "2021-03-28T03:00:00+02:00"]

    with pytest.raises(ValueError, match="one timestamp"):
        split_by_time(one_hour)


def test_sample_has_n_rows_of_the_input_in_time_order(raw: pd.DataFrame) -> None:
    sample = sample_rows(raw, n=25, seed=1)

    assert len(sample) == 25
    assert set(sample.itertuples(index=False, name=None)) <= set(
        raw.itertuples(index=False, name=None)
    )
    assert times_of(sample).is_monotonic_increasing
    assert list(sample.columns) == list(raw.columns)


def test_sample_is_seeded(raw: pd.DataFrame) -> None:
    first = sample_rows(raw, n=30, seed=7)

    pd.testing.assert_frame_equal(first, sample_rows(raw, n=30, seed=7))
    assert not first.equals(sample_rows(raw, n=30, seed=8))


def test_sample_larger_than_the_data_returns_all_rows(raw: pd.DataFrame) -> None:
    sample = sample_rows(raw, n=10_000)

    assert as_sorted_rows(sample) == as_sorted_rows(raw)
    assert times_of(sample).is_monotonic_increasing


def test_sample_of_zero_rows_is_refused(raw: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sample_rows(raw, n=0)
