"""A local stand-in for the Paris Open Data Explore API (v2.1) export endpoint.

It serves a raw export frame as the real site does (``;``-separated CSV, French headers) at the
real path, and applies the ODSQL ``where`` clause that bikecount sends for one day
(``date >= date'START' AND date < date'END'``); any other clause is a 400, as an unknown query
is on the real site. Requests are recorded for the tests to read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
from servers import in_thread

from bikecount.records import TIMESTAMP, parse_timestamps

EXPORT_PATH = "/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs/exports/csv"
DAY_CLAUSE = re.compile(r"date >= date'([^']+)' AND date < date'([^']+)'")


class OpenDataServer(ThreadingHTTPServer):
    daemon_threads = True
    export: pd.DataFrame
    requests: list[dict[str, list[str]]]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{EXPORT_PATH}?delimiter=%3B"


class ExportHandler(BaseHTTPRequestHandler):
    server: OpenDataServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.server.requests.append(query)
        if parts.path != EXPORT_PATH:
            self.send_error(404, "Not Found")
            return
        rows = self.server.export
        if "where" in query:
            match = DAY_CLAUSE.fullmatch(query["where"][0])
            if match is None:
                self.send_error(400, "ODSQL query is malformed")
                return
            stamps = parse_timestamps(rows[TIMESTAMP])
            start, end = (pd.Timestamp(bound) for bound in match.groups())
            rows = rows[(stamps >= start) & (stamps < end)]
        body = rows.to_csv(sep=";", index=False).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@contextmanager
def serving(export: pd.DataFrame) -> Iterator[OpenDataServer]:
    """Serve ``export`` on a free loopback port until the block ends."""
    server = OpenDataServer(("127.0.0.1", 0), ExportHandler)
    server.export, server.requests = export, []
    with in_thread(server):
        yield server
