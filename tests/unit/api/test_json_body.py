"""``/predict``'s JSON reader gives the standard library's values and errors, faster.

orjson parses most bodies; where it would differ from ``json.loads`` (integers beyond 64 bits,
which it reads as floats; ``NaN`` and ``1e400``, which it refuses), the standard library reads the
body, so the API's answers do not change: ``json.loads`` is the reference here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bikecount.api.json_body import read_json
from bikecount.data.io import read_records

REAL_EXPORT = Path(__file__).parents[2] / "fixtures" / "opendata" / "exports-csv-2021-06-01.csv"


def test_real_records_read_as_the_standard_library_reads_them() -> None:
    records = read_records(REAL_EXPORT).astype(object).to_dict(orient="records")
    body = json.dumps({"records": records, "model_type": "rf"}, default=str).encode()
    assert read_json(body) == json.loads(body)


def test_numbers_read_as_the_standard_library_reads_them() -> None:
    rng = random.Random(3)
    texts = [f"{rng.uniform(-200, 200):.{rng.randint(0, 16)}f}" for _ in range(20_000)]
    texts += [
        f"{rng.uniform(-10, 10):.{rng.randint(0, 16)}f}e{rng.randint(-300, 300)}"
        for _ in range(20_000)
    ]
    texts += [str(rng.randint(-(10**17), 10**17)) for _ in range(5_000)]  # orjson reads them all
    body = ("[" + ",".join(texts) + "]").encode()
    read = read_json(body)
    assert read == json.loads(body)
    assert [type(value) for value in read] == [type(value) for value in json.loads(body)]


@pytest.mark.parametrize(
    "body",
    [
        b'{"records": [{"lat": 123456789012345678901234567890}]}',  # an int, not a float
        b'{"records": [{"count": -99999999999999999999}]}',
        b'{"value": NaN, "other": Infinity}',
        b'{"value": 1e400}',
        b'{"a": 1, "a": 2}',
        b'"\\ud800"',
    ],
)
def test_what_orjson_reads_otherwise_is_read_by_the_standard_library(body: bytes) -> None:
    assert repr(read_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b'{"records": [', b"{'a': 1}", b"", b'{"a": 1} x'])
def test_invalid_json_raises_the_standard_librarys_error(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        read_json(body)
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body)
    assert (raised.value.msg, raised.value.pos) == (expected.value.msg, expected.value.pos)
