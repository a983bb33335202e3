"""A local stand-in for the Paris Open Data Explore API (v2.1): the dataset's CSV export and its
``/records`` JSON endpoint, in the formats the real site answers with.

What the real API does, and this stand-in with it (sources: the Explore API v2.1 reference at
https://help.opendatasoft.com/apis/ods-explore-v2/ ; public clients of this very dataset, e.g.
github.com/arthurcornelio88/bike-count-prediction-app ``dags/dag_daily_fetch_data.py``, which
pages ``/records`` by 100 and reads ``sum_counts``, ``date``, ``coordinates``; and the notes in
``shared/reference/paris-open-data-api.md``):

- ``.../exports/csv``: headers are the field names (``id_compteur;nom_compteur;...``) unless the
  query says ``use_labels=true``; ``delimiter`` sets the separator (``;`` by default); no row limit.
- ``.../records``: ``{"total_count": N, "results": [...]}``, ``limit`` at most 100 (a 400 above
  it) and ``offset + limit`` at most 10,000; ``sum_counts`` a number, ``coordinates`` an object
  ``{"lon": .., "lat": ..}``.
- Both: ``date`` written with the offset of the ``timezone`` asked for (UTC without one), a
  ``where`` clause in ODSQL (this stand-in knows the one-day clause bikecount sends, and answers
  400 to any other, as the real one answers a malformed query).

The rows served come from a frame in the export's labels (any source: real rows, generated ones).
Requests are recorded for the tests to read; ``fail_exports`` makes the export answer 503.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from servers import in_thread

from bikecount.records import (
    COORDINATES,
    COUNT,
    FIELD_TO_EXPORT,
    TIMESTAMP,
    parse_coordinates,
    parse_timestamps,
    to_export_columns,
)

DATASET = "/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs"
EXPORT_PATH = f"{DATASET}/exports/csv"
RECORDS_PATH = f"{DATASET}/records"
DAY_CLAUSE = re.compile(r"date >= date'([^']+)' AND date < date'([^']+)'")
MAX_LIMIT, MAX_WINDOW = 100, 10_000
# A few real rows of the API's default CSV (field names), and a /records page of the same day.
FIXTURES = Path(__file__).parent.parent / "fixtures" / "opendata"
REAL_EXPORT = FIXTURES / "exports-csv-2021-06-01.csv"
REAL_RECORDS_PAGE = FIXTURES / "records-page-2021-06-01.json"
LABEL_TO_FIELD = {label: name for name, label in FIELD_TO_EXPORT.items()}


class OpenDataServer(ThreadingHTTPServer):
    daemon_threads = True
    export: pd.DataFrame
    requests: list[dict[str, list[str]]]
    fail_exports: bool

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The export URL, as ``BIKECOUNT_OPEN_DATA_URL`` has it by default."""
        return f"{self.base}{EXPORT_PATH}?delimiter=%3B&timezone=Europe%2FParis"


class OpenDataHandler(BaseHTTPRequestHandler):
    server: OpenDataServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.server.requests.append({**parse_qs(parts.query), "path": [parts.path]})
        if parts.path not in (EXPORT_PATH, RECORDS_PATH):
            self._error(404, "Not Found")
            return
        if parts.path == EXPORT_PATH and self.server.fail_exports:
            self._error(503, "Service Unavailable")
            return
        rows = self.server.export
        if "where" in query:
            match = DAY_CLAUSE.fullmatch(query["where"])
            if match is None:
                self._error(400, "ODSQL query is malformed")
                return
            stamps = parse_timestamps(rows[TIMESTAMP])
            start, end = (pd.Timestamp(bound) for bound in match.groups())
            rows = rows[(stamps >= start) & (stamps < end)]
        rows = in_timezone(rows, query.get("timezone", "UTC"))
        if parts.path == EXPORT_PATH:
            self._export(rows, query)
        else:
            self._records(rows, query)

    def _export(self, rows: pd.DataFrame, query: dict[str, str]) -> None:
        if query.get("use_labels", "false").lower() != "true":
            rows = rows.rename(columns=LABEL_TO_FIELD)
        body = rows.to_csv(sep=query.get("delimiter", ";"), index=False).encode("utf-8")
        self._send(200, body, "text/csv; charset=utf-8")

    def _records(self, rows: pd.DataFrame, query: dict[str, str]) -> None:
        limit, offset = int(query.get("limit", "10")), int(query.get("offset", "0"))
        if not 0 <= limit <= MAX_LIMIT or offset < 0 or offset + limit > MAX_WINDOW:
            self._error(400, f"Invalid value for limit or offset (limit <= {MAX_LIMIT})")
            return
        if query.get("order_by") == "date":
            rows = rows.iloc[parse_timestamps(rows[TIMESTAMP]).argsort(kind="stable")]
        page = rows.iloc[offset : offset + limit]
        body = {"total_count": len(rows), "results": [as_json(row) for row in page_rows(page)]}
        self._send(200, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error_code": "ODSQLError", "message": message}).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


def in_timezone(rows: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """``date`` written with the offset of ``timezone``, as the API writes it."""
    stamps = parse_timestamps(rows[TIMESTAMP]).dt.tz_convert(timezone)
    return rows.assign(**{TIMESTAMP: [stamp.isoformat() for stamp in stamps]})


def page_rows(page: pd.DataFrame) -> Iterator[dict[str, object]]:
    lat, lon = parse_coordinates(page[COORDINATES])
    for (_, row), row_lat, row_lon in zip(page.iterrows(), lat, lon, strict=True):
        record = {LABEL_TO_FIELD.get(label, label): value for label, value in row.items()}
        record["coordinates"] = {"lon": row_lon, "lat": row_lat}
        record["sum_counts"] = int(row[COUNT])
        yield record


def as_json(record: dict[str, object]) -> dict[str, object]:
    """Empty cells are JSON nulls."""
    return {key: None if pd.isna(value) or value == "" else value for key, value in record.items()}


def real_export() -> pd.DataFrame:
    """The few real rows shipped with the tests, in the export's labels."""
    return to_export_columns(pd.read_csv(REAL_EXPORT, sep=";", dtype=str, keep_default_na=False))


@contextmanager
def serving(export: pd.DataFrame, *, fail_exports: bool = False) -> Iterator[OpenDataServer]:
    """Serve ``export`` (raw rows in any spelling) on a free loopback port until the block ends."""
    server = OpenDataServer(("127.0.0.1", 0), OpenDataHandler)
    server.export, server.requests = to_export_columns(export), []
    server.fail_exports = fail_exports
    with in_thread(server):
        yield server
