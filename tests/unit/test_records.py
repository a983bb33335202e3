"""The raw-record contract: three spellings, Paris local time across DST, and precise issues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import helpers
from bikecount.data.io import read_records, write_records
from bikecount.records import (
    COORDINATES,
    COUNT,
    COUNTER,
    FIELD_TO_EXPORT,
    PARIS_TZ,
    REQUIRED_COLUMNS,
    TIMESTAMP,
    MissingColumnsError,
    RecordError,
    RecordIssue,
    parse_coordinates,
    parse_records,
    parse_timestamps,
    require_valid,
    to_raw_records,
)

CANONICAL = ["counter", "timestamp", "lat", "lon", "count"]


def paris(text: str) -> pd.Timestamp:
    """A Europe/Paris instant from an ISO text with its offset."""
    return pd.Timestamp(text).tz_convert(PARIS_TZ)


# --- spellings -----------------------------------------------------------------------------


@pytest.mark.parametrize("coordinates", ["coordonnées_géographiques", "coordonnees_geographiques"])
def test_both_spellings_parse_to_the_same_frame(small_raw: pd.DataFrame, coordinates: str) -> None:
    raw = small_raw.head(300)
    french = parse_records(raw, require_count=True)
    snake = parse_records(helpers.to_snake_case(raw, coordinates), require_count=True)

    assert french.issues == snake.issues == []
    pd.testing.assert_frame_equal(french.frame, snake.frame)
    assert len(french.frame) == 300


def test_canonical_frame_has_the_contract_columns_and_types(small_raw: pd.DataFrame) -> None:
    frame = parse_records(small_raw.head(50), require_count=True).frame

    assert list(frame.columns) == CANONICAL
    assert str(frame["timestamp"].dtype) == f"datetime64[ns, {PARIS_TZ}]"
    assert frame[["lat", "lon", "count"]].dtypes.eq(np.float64).all()
    assert list(frame.index) == list(range(50))


def to_field_names(raw: pd.DataFrame) -> pd.DataFrame:
    """The records with the Explore API's field names (its default CSV headers)."""
    return raw.rename(columns={label: name for name, label in FIELD_TO_EXPORT.items()})


def test_the_api_field_names_parse_to_the_same_frame(small_raw: pd.DataFrame) -> None:
    raw = small_raw.head(300)

    fields = parse_records(to_field_names(raw), require_count=True)

    assert "nom_compteur" in to_field_names(raw).columns and fields.issues == []
    pd.testing.assert_frame_equal(fields.frame, parse_records(raw, require_count=True).frame)


@pytest.mark.parametrize(
    "other", ["nom_du_compteur", "nom_compteur"], ids=["snake_case", "field_name"]
)
def test_a_field_spelled_twice_is_refused_naming_both_columns(other: str) -> None:
    raw = helpers.raw_records([{}]).assign(**{other: "autre nom"})

    with pytest.raises(RecordError) as caught:
        parse_records(raw)

    assert caught.value.issues[0].column == COUNTER
    assert f"'{COUNTER}' and '{other}'" in str(caught.value)


def test_records_of_no_known_spelling_name_their_columns_and_the_expected_ones() -> None:
    raw = pd.DataFrame({"station": ["Rivoli"], "heure": ["08:00"], "velos": ["12"]})

    with pytest.raises(MissingColumnsError) as caught:
        parse_records(raw, require_count=True)

    message = str(caught.value)
    assert "'station', 'heure', 'velos'" in message
    for expected in (COUNTER, "nom_compteur", "nom_du_compteur", "sum_counts", "date"):
        assert repr(expected) in message
    assert {issue.column for issue in caught.value.issues} == {
        COUNTER, TIMESTAMP, COORDINATES, COUNT
    }  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        "48.8566,2.3522",
        "48.8566, 2.3522",
        {"lon": 2.3522, "lat": 48.8566},
        {"lat": "48.8566", "lon": "2.3522"},
    ],
    ids=["lat,lon", "lat, lon", "object", "object of text"],
)
def test_coordinates_in_every_form_the_api_writes(value: object) -> None:
    lat, lon = parse_coordinates(pd.Series([value], dtype=object))

    assert (lat[0], lon[0]) == (48.8566, 2.3522)


@pytest.mark.parametrize(
    "value", [{"lon": 2.35}, {"lon": "x", "lat": 48.8}, {"lat": True, "lon": 2.3}, [48.8, 2.3]]
)
def test_an_incomplete_coordinates_object_is_an_issue(value: object) -> None:
    raw = helpers.raw_records([{}]).astype(object)
    raw.at[0, COORDINATES] = value

    parsed = parse_records(raw)

    assert parsed.frame.empty and parsed.issues[0].column == COORDINATES


@pytest.mark.parametrize("month", ["juin 2021", "2021-06", None, "n'importe quoi"])
def test_the_month_field_is_optional_whatever_its_format(month: object) -> None:
    raw = helpers.raw_records([{}]).assign(mois_annee_comptage=month)

    assert parse_records(raw, require_count=True).issues == []


def test_an_object_where_a_name_or_a_count_is_expected_is_an_issue() -> None:
    raw = helpers.raw_records([{}, {}]).astype(object)
    raw.at[0, COUNTER] = {"name": "Rivoli"}
    raw.at[1, COUNT] = {"value": 3}

    parsed = parse_records(raw)

    assert parsed.frame.empty
    assert [(issue.row, issue.column) for issue in parsed.issues] == [(0, COUNTER), (1, COUNT)]


def test_count_is_optional_for_prediction() -> None:
    raw = helpers.raw_records([{}]).drop(columns=[COUNT])

    parsed = parse_records(raw)

    assert parsed.issues == []
    assert parsed.frame["count"].isna().all()


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local_wall_clock", "utc"),
    [
        # The spring-forward night: 01:00 CET is followed by 03:00 CEST, one hour later.
        ("2021-03-28T01:00:00+01:00", "2021-03-28 01:00", "2021-03-28 00:00"),
        ("2021-03-28T03:00:00+02:00", "2021-03-28 03:00", "2021-03-28 01:00"),
        # The fall-back night: 02:00 happens twice, first in CEST then in CET.
        ("2021-10-31T02:00:00+02:00", "2021-10-31 02:00", "2021-10-31 00:00"),
        ("2021-10-31T02:00:00+01:00", "2021-10-31 02:00", "2021-10-31 01:00"),
        # Other offsets are converted to Paris time.
        ("2021-06-01T06:00:00Z", "2021-06-01 08:00", "2021-06-01 06:00"),
        ("2021-06-01T06:00:00+00:00", "2021-06-01 08:00", "2021-06-01 06:00"),
        ("2021-01-15T12:00:00-05:00", "2021-01-15 18:00", "2021-01-15 17:00"),
        # Naive values are Paris wall-clock time.
        ("2021-06-01T08:00:00", "2021-06-01 08:00", "2021-06-01 06:00"),
        ("2021-01-15T08:00:00", "2021-01-15 08:00", "2021-01-15 07:00"),
    ],
)
def test_timestamps_become_paris_local_time(text: str, local_wall_clock: str, utc: str) -> None:
    parsed = parse_timestamps(pd.Series([text]))[0]

    assert str(parsed.tz) == PARIS_TZ
    assert parsed.tz_localize(None) == pd.Timestamp(local_wall_clock)
    assert parsed.tz_convert("UTC").tz_localize(None) == pd.Timestamp(utc)


def test_spring_forward_hours_are_one_hour_apart() -> None:
    before, after = parse_timestamps(
        pd.Series(["2021-03-28T01:00:00+01:00", "2021-03-28T03:00:00+02:00"])
    )

    assert after - before == pd.Timedelta(hours=1)


def test_repeated_october_hour_is_two_distinct_instants() -> None:
    raw = helpers.raw_records(
        [{TIMESTAMP: "2021-10-31T02:00:00+02:00"}, {TIMESTAMP: "2021-10-31T02:00:00+01:00"}]
    )

    first, second = parse_records(raw).frame["timestamp"]

    assert first.hour == second.hour == 2
    assert second - first == pd.Timedelta(hours=1)


@pytest.mark.parametrize(
    "naive",
    [
        "2021-03-28T02:30:00",  # does not exist: clocks jump from 02:00 to 03:00
        "2021-10-31T02:30:00",  # ambiguous: happens once in CEST and once in CET
    ],
)
def test_naive_dst_gap_or_repeat_is_rejected(naive: str) -> None:
    raw = helpers.raw_records([{}, {TIMESTAMP: naive}])

    parsed = parse_records(raw)

    assert [(i.row, i.column, i.value) for i in parsed.issues] == [(1, TIMESTAMP, naive)]
    assert list(parsed.frame.index) == [0]


# --- coordinates ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["48.8566,2.3522", "48.8566, 2.3522", " 48.8566 ,2.3522 "])
def test_coordinates_with_or_without_space(text: str) -> None:
    frame = parse_records(helpers.raw_records([{COORDINATES: text}])).frame

    assert (frame["lat"].iloc[0], frame["lon"].iloc[0]) == (48.8566, 2.3522)


# --- issues --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (COUNTER, ""),
        (COUNTER, None),
        (TIMESTAMP, "31/02/2021 8h"),
        (TIMESTAMP, "2021-02-30T08:00:00+01:00"),
        (TIMESTAMP, None),
        (COORDINATES, "45.7640,4.8357"),  # Lyon
        (COORDINATES, "2.3522,48.8566"),  # lon, lat swapped
        (COORDINATES, "48.8566"),
        (COORDINATES, "somewhere in Paris"),
        (COUNT, "-3"),
        (COUNT, "2.5"),
        (COUNT, "inf"),
        (COUNT, "many"),
        (COUNT, None),
    ],
)
def test_each_bad_value_is_an_issue_naming_row_column_and_value(column: str, value: object) -> None:
    raw = helpers.raw_records([{}, {column: value}, {}])

    parsed = parse_records(raw, require_count=True)

    assert len(parsed.issues) == 1
    issue = parsed.issues[0]
    assert (issue.row, issue.column) == (1, column)
    assert issue.value == value
    assert issue.expected
    assert f"row 1, column {column!r}" in str(issue)
    # The bad row is dropped, the good ones are kept at their positions.
    assert list(parsed.frame.index) == [0, 2]
    assert parsed.dropped_rows == 1


def test_issue_value_is_the_raw_value_as_given() -> None:
    raw = helpers.raw_records([{COUNT: "-3"}, {COUNT: "2.5"}])

    parsed = parse_records(raw, require_count=True)

    assert [(i.row, i.value) for i in parsed.issues] == [(0, "-3"), (1, "2.5")]


def test_numeric_counts_are_checked_too() -> None:
    raw = helpers.raw_records([{}, {}, {}]).assign(**{COUNT: [4, -1, 2.5]})

    parsed = parse_records(raw, require_count=True)

    assert [(i.row, i.value) for i in parsed.issues] == [(1, -1.0), (2, 2.5)]
    assert parsed.frame["count"].tolist() == [4.0]


def test_missing_count_is_fine_for_prediction_but_not_for_training() -> None:
    raw = helpers.raw_records([{COUNT: None}])

    assert parse_records(raw).issues == []
    assert [i.column for i in parse_records(raw, require_count=True).issues] == [COUNT]


@pytest.mark.parametrize("column", [*REQUIRED_COLUMNS, COUNT])
def test_missing_column_is_a_record_error_naming_it(column: str) -> None:
    raw = helpers.raw_records([{}, {}]).drop(columns=[column])

    with pytest.raises(RecordError) as caught:
        parse_records(raw, require_count=True)

    assert [(i.row, i.column) for i in caught.value.issues] == [(-1, column)]
    assert column in str(caught.value)
    assert caught.value.total_rows == 2


def test_file_with_a_few_bad_rows_keeps_the_good_ones(small_raw: pd.DataFrame, tmp_path) -> None:
    raw = small_raw.head(40).copy()
    raw.loc[3, TIMESTAMP] = "not a date"
    raw.loc[10, COORDINATES] = "0,0"
    raw.loc[20, COUNT] = -5
    raw.loc[21, COUNT] = -1
    raw.loc[30, [TIMESTAMP, COORDINATES]] = ["2021-13-01T00:00:00+01:00", "48.8"]  # two issues
    path = write_records(raw, tmp_path / "records.csv")

    parsed = parse_records(read_records(path), require_count=True)

    assert parsed.total_rows == 40
    assert parsed.dropped_rows == 5
    assert len(parsed.frame) == 35
    assert not parsed.frame.index.isin([3, 10, 20, 21, 30]).any()
    reasons = {key.split(": expected")[0]: n for key, n in parsed.drop_reasons().items()}
    assert reasons == {TIMESTAMP: 2, COORDINATES: 2, COUNT: 2}
    assert sum(parsed.drop_reasons().values()) == len(parsed.issues) == 6
    assert [i.row for i in parsed.issues] == sorted(i.row for i in parsed.issues)


def test_require_valid_raises_with_every_issue() -> None:
    raw = helpers.raw_records([{}, {COUNT: "-1"}, {COORDINATES: "1,1"}])

    with pytest.raises(RecordError) as caught:
        require_valid(raw, require_count=True)

    assert [(i.row, i.column) for i in caught.value.issues] == [(1, COUNT), (2, COORDINATES)]
    assert caught.value.total_rows == 3
    assert "2 invalid record value(s)" in str(caught.value)


def test_require_valid_returns_the_frame_when_all_rows_are_valid() -> None:
    frame = require_valid(helpers.raw_records([{}, {}]))

    assert list(frame.columns) == CANONICAL
    assert len(frame) == 2


def test_record_error_message_shows_the_first_five_issues() -> None:
    issues = [RecordIssue(row, COUNT, "-1", "a count") for row in range(7)]

    message = str(RecordError(issues))

    assert message.startswith("7 invalid record value(s): row 0,")
    assert "row 4," in message and "row 5," not in message
    assert message.endswith("(and 2 more)")


# --- round trip ----------------------------------------------------------------------------


def test_to_raw_records_round_trips(small_frame: pd.DataFrame) -> None:
    # The small data set spans the spring DST night, so offsets change inside it.
    raw = to_raw_records(small_frame)

    assert list(raw.columns) == list(REQUIRED_COLUMNS)
    parsed = parse_records(raw)
    assert parsed.issues == []
    pd.testing.assert_frame_equal(
        parsed.frame.drop(columns="count"), small_frame.drop(columns="count").reset_index(drop=True)
    )
    assert parsed.frame["count"].isna().all()


def test_to_raw_records_keeps_the_offsets_of_the_repeated_hour() -> None:
    frame = parse_records(
        helpers.raw_records(
            [{TIMESTAMP: "2021-10-31T02:00:00+02:00"}, {TIMESTAMP: "2021-10-31T02:00:00+01:00"}]
        )
    ).frame

    stamps = to_raw_records(frame)[TIMESTAMP].tolist()

    assert stamps == ["2021-10-31T02:00:00+02:00", "2021-10-31T02:00:00+01:00"]
    assert paris(stamps[1]) - paris(stamps[0]) == pd.Timedelta(hours=1)
