"""The query bikecount sends to Paris Open Data for one day (the answers, from a local stand-in
of the API: tests/integration/test_opendata.py)."""

from __future__ import annotations

from datetime import date
from urllib.parse import parse_qs, urlsplit

from bikecount.data.opendata import day_export_url


def test_the_open_data_query_spans_the_local_day_with_its_offsets() -> None:
    url = day_export_url("https://example.org/exports/csv?delimiter=%3B", date(2021, 3, 28))
    query = parse_qs(urlsplit(url).query)
    assert query["delimiter"] == [";"] and query["timezone"] == ["Europe/Paris"]
    # The night the clocks go forward: the day starts at +01:00 and the next one at +02:00.
    assert query["where"] == [
        "date >= date'2021-03-28T00:00:00+01:00' AND date < date'2021-03-29T00:00:00+02:00'"
    ]
