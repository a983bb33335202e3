"""One day of counts from the Paris Open Data Explore API (v2.1): its CSV export, else its
``/records`` JSON endpoint.

The export (``.../exports/csv``) is the pipeline's source: one request, no row limit. When it
answers an HTTP error (the portal's exports are heavier and fail first), the same day is paged
from ``.../records``: at most 100 records a page, ``where`` on the day, answered as
``{"total_count": N, "results": [...]}`` with the API's field names (``nom_compteur``,
``sum_counts`` a number, ``date`` with its offset, ``coordinates`` as ``{"lon", "lat"}``), which
the record contract reads as it is.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
from pydantic import JsonValue

from bikecount.data.fetch import FetchError, describe_transport_error, download_export
from bikecount.data.io import read_records
from bikecount.records import PARIS_TZ

logger = logging.getLogger(__name__)

# The API's bounds on /records: a page holds at most 100 records, and offset + limit stays
# within 10,000 (page through a day, never the whole dataset).
PAGE_SIZE = 100
MAX_RECORDS = 10_000
# Query parameters that only the export understands; /records answers 400 to them.
EXPORT_ONLY = ("delimiter", "use_labels", "list_separator", "quote_all", "with_bom", "compressed")

QueryParams = dict[str, str | int]
# One record as /records answers it: the API's field names, each with its JSON value.
JsonRecord = dict[str, JsonValue]


def day_clause(day: date) -> str:
    """The ODSQL ``where`` clause of one Europe/Paris ``day``.

    The bounds carry their UTC offset, so a daylight-saving day has its 23 or 25 hours.
    """
    paris = ZoneInfo(PARIS_TZ)
    start = datetime.combine(day, time(), paris).isoformat()
    end = datetime.combine(day + timedelta(days=1), time(), paris).isoformat()
    return f"date >= date'{start}' AND date < date'{end}'"


def day_export_url(url: str, day: date) -> str:
    """The export ``url`` narrowed to the counts of one Europe/Paris ``day``.

    The caller still keeps only the rows of the day: a server that ignores the filter costs
    bandwidth, not correctness.
    """
    params = {"where": day_clause(day), "timezone": PARIS_TZ}
    return str(httpx.URL(url).copy_merge_params(params))


def records_url(export_url: str) -> str:
    """The ``/records`` endpoint of the dataset whose export is ``export_url``."""
    parsed = httpx.URL(export_url)
    path = parsed.path
    marker = path.find("/exports/")
    if marker < 0:
        raise FetchError(
            f"{export_url} is not an Explore API export URL (.../datasets/<id>/exports/csv); "
            "set BIKECOUNT_OPEN_DATA_URL to one"
        )
    params = [(key, value) for key, value in parsed.params.multi_items() if key not in EXPORT_ONLY]
    return str(parsed.copy_with(path=path[:marker] + "/records", params=params))


def read_day(
    export_url: str, day: date, *, timeout: float = 60.0
) -> tuple[pd.DataFrame, str | None]:
    """The raw records of ``day`` (any spelling), and a note when they came from ``/records``.

    Raises:
        FetchError: the API cannot be reached, or both endpoints answer an error.
    """
    try:
        return read_day_export(export_url, day, timeout=timeout), None
    except FetchError as exc:
        if exc.status is None:
            raise  # unreachable: the records endpoint is on the same host
        logger.warning("the export failed (%s); reading the records endpoint", exc)
        note = f"export unavailable (HTTP {exc.status}); read from /records"
    return read_day_records(records_url(export_url), day, timeout=timeout), note


def read_day_export(export_url: str, day: date, *, timeout: float = 60.0) -> pd.DataFrame:
    """The day's CSV export, downloaded through a temporary file."""
    with tempfile.TemporaryDirectory(prefix="bikecount-opendata-") as folder:
        path = download_export(
            day_export_url(export_url, day), Path(folder) / f"{day}.csv", timeout=timeout
        )
        return read_records(path)


def read_day_records(url: str, day: date, *, timeout: float = 60.0) -> pd.DataFrame:
    """Page the day's records from the ``/records`` endpoint ``url``, 100 at a time.

    Raises:
        FetchError: an HTTP error, an answer that is not the API's JSON, or a day of more
            records than the endpoint lets one page through.
    """
    params: QueryParams = {
        "where": day_clause(day),
        "timezone": PARIS_TZ,
        "order_by": "date",
        "limit": PAGE_SIZE,
    }
    results: list[JsonRecord] = []
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            total = None
            while total is None or len(results) < total:
                page_total, page = _page(client, url, {**params, "offset": len(results)})
                total = page_total if total is None else total
                if total > MAX_RECORDS:
                    raise FetchError(
                        f"{url} holds {total:,} records of {day}, more than its pages reach "
                        f"({MAX_RECORDS:,}); read the export instead"
                    )
                if not page:
                    break  # the day shrank while being read: keep what was read
                results += page
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise describe_transport_error(url, exc) from exc
    logger.info("read %d records of %s from %s", len(results), day, url)
    return pd.DataFrame.from_records(results)


def _page(client: httpx.Client, url: str, params: QueryParams) -> tuple[int, list[JsonRecord]]:
    response = client.get(url, params=params)
    if response.status_code >= 400:
        raise FetchError(
            f"HTTP {response.status_code} {response.reason_phrase} from {response.url}",
            status=response.status_code,
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise FetchError(f"{url} did not answer JSON ({exc})") from exc
    total = body.get("total_count") if isinstance(body, dict) else None
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(total, int) or not isinstance(results, list):
        raise FetchError(
            f"{url} did not answer the Explore API's records: expected "
            '{"total_count": N, "results": [...]}'
        )
    return total, [row for row in results if isinstance(row, dict)]
