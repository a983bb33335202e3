"""The quick reading of a few JSON records gives the records contract's own frame, or steps aside.

``quick_frame`` must never differ from ``require_valid(records_frame(...))`` on a value, and must
leave every record it is unsure of to it (``None``), so errors keep their one home.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from bikecount.api.quick_records import QUICK_RECORDS_LIMIT, quick_frame
from bikecount.api.records_body import records_frame
from bikecount.api.routes.predict import valid_frame
from bikecount.data.io import read_records
from bikecount.records import FIELD_TO_EXPORT, SNAKE_TO_EXPORT, RecordError, require_valid
from helpers import REPO

REAL_EXPORT = REPO / "tests" / "fixtures" / "opendata" / "exports-csv-2021-06-01.csv"
Record = dict[str, Any]


def full_frame(records: list[Record]) -> pd.DataFrame:
    return require_valid(records_frame(records))


@pytest.fixture(scope="module")
def real_records() -> list[Record]:
    """The 48 real rows of the Explore API's CSV export (2 counters x 24 hours), as JSON
    records: its field names, values as text, empty fields left out."""
    rows = read_records(REAL_EXPORT).to_dict(orient="records")
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for row in rows
    ]


def respelled(records: list[Record], names: dict[str, str]) -> list[Record]:
    """The records with each field under its export label, or the name ``names`` gives it."""
    labelled = [{FIELD_TO_EXPORT.get(k, k): v for k, v in record.items()} for record in records]
    return [{names.get(k, k): v for k, v in record.items()} for record in labelled]


def as_api_json(records: list[Record]) -> list[Record]:
    """The records as the Explore API's JSON gives them: coordinates an object, counts numbers."""
    converted = []
    for record in records:
        lat, lon = (float(part) for part in record["coordinates"].split(","))
        converted.append(
            {
                **record,
                "coordinates": {"lon": lon, "lat": lat},
                "sum_counts": int(record["sum_counts"]),
            }
        )
    return converted


def test_real_records_in_every_spelling_read_as_the_contract_reads_them(
    real_records: list[Record],
) -> None:
    first_snake_names = {label: snake for snake, label in reversed(SNAKE_TO_EXPORT.items())}
    spellings = {
        "field names": real_records,
        "export labels": respelled(real_records, {}),
        "snake_case": respelled(real_records, first_snake_names),
        "JSON objects": as_api_json(real_records),
    }
    for name, records in spellings.items():
        for batch in (records[:1], records[:24], records):
            quick = quick_frame(batch)
            assert quick is not None, name
            pd.testing.assert_frame_equal(quick, full_frame(batch), obj=name)


@pytest.mark.parametrize(
    "stamp",
    [
        "2021-06-01T08:00:00+02:00",
        "2021-06-01 08:00:00+02:00",
        "2021-06-01T08:00+02:00",
        "2021-06-01T06:00:00Z",
        "2021-03-28T01:30:00+01:00",  # the spring night: 03:30 in Paris an hour later
        "2021-10-31T02:30:00+02:00",  # the autumn night: 02:30 happens twice
        "2021-10-31T02:30:00+01:00",
        "2021-12-31T23:30:00-05:30",
        "2040-07-01T12:00:00+00:00",
    ],
)
def test_timestamps_with_an_offset_are_the_same_instants(stamp: str) -> None:
    record = {"nom_compteur": "Totem", "date": stamp, "coordinates": "48.8566,2.3522"}

    quick = quick_frame([record])

    assert quick is not None
    pd.testing.assert_frame_equal(quick, full_frame([record]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("date", "2021-06-01T08:00:00"),  # no offset: Paris wall time, the contract decides
        ("date", "2021-06-01T08:00:00.250+02:00"),
        ("date", "2021-06-01T06:00:00z"),
        ("date", "2021-02-30T08:00:00+02:00"),
        ("date", "2021-06-01T24:00:00+02:00"),
        ("date", "1er juin 2021"),
        ("date", 1622527200),
        ("coordinates", "48.8566;2.3522"),
        ("coordinates", "48.8566,2.3522,1"),
        ("coordinates", "1e1,2.35"),
        ("coordinates", "0,0"),
        ("coordinates", {"lat": "48.85", "lon": 2.35}),
        ("coordinates", {"lat": True, "lon": 2.35}),
        ("coordinates", [48.85, 2.35]),
        ("nom_compteur", "   "),
        ("nom_compteur", 12),
        ("nom_compteur", None),
        ("sum_counts", -1),
        ("sum_counts", 1.5),
        ("sum_counts", True),
        ("sum_counts", "7 "),
        ("id", 2**70),
    ],
)
def test_anything_else_is_left_to_the_contract(field: str, value: object) -> None:
    record = {"nom_compteur": "Totem", "date": "2021-06-01T08:00:00+02:00"}
    record["coordinates"] = "48.8566,2.3522"
    record[field] = value

    assert quick_frame([record]) is None
    # What the API does with it: the contract's answer, a frame or its errors.
    try:
        expected = full_frame([record])
    except RecordError as error:
        with pytest.raises(RecordError) as raised:
            valid_frame([record])
        assert str(raised.value) == str(error)
    else:
        pd.testing.assert_frame_equal(valid_frame([record]), expected)


def test_missing_or_doubled_fields_and_big_batches_are_left_to_the_contract(
    real_records: list[Record],
) -> None:
    missing = {k: v for k, v in real_records[0].items() if k != "date"}
    doubled = {**real_records[0], "Nom du compteur": "Totem"}
    many = (real_records * (QUICK_RECORDS_LIMIT // len(real_records) + 1))[
        : QUICK_RECORDS_LIMIT + 1
    ]

    assert quick_frame([missing]) is None
    assert quick_frame([real_records[1], doubled]) is None
    assert quick_frame([]) is None
    assert quick_frame(many) is None
    pd.testing.assert_frame_equal(valid_frame(many), full_frame(many))
