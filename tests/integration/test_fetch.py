"""download_export and `bikecount data fetch` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

import helpers
from bikecount.cli import app
from bikecount.data.fetch import FetchError, download_export, partial_path
from bikecount.records import EXPORT_COLUMNS

pytestmark = pytest.mark.integration


def make_export_bytes(rows: int = 200) -> bytes:
    """A small ';'-separated export (UTF-8, French headers), as the Open Data site serves it."""
    lines = [";".join(EXPORT_COLUMNS)]
    for i in range(rows):
        hour = f"2021-06-{1 + i // 48:02d}T{(i // 2) % 24:02d}:00:00+02:00"
        values = [f"100-{i % 2}", f"10 rue Exemple {'NS'[i % 2]}", "100", "10 rue Exemple"]
        values += [str(i % 37), hour, "2019-01-01", "", "48.8566,2.3522", "X1", "", "", "", ""]
        values += ["", "juin 2021"]
        lines.append(";".join(values))
    return ("\n".join(lines) + "\n").encode("utf-8")


PAYLOAD = make_export_bytes()
RANGE = re.compile(r"bytes=(\d+)-$")


class ExportHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /export.csv (honouring Range) and /norange.csv (ignoring it)."""

    server: ExportServer

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        self.server.requests.append((self.path, range_header))
        if self.path == "/norange.csv":
            self._send(200, PAYLOAD)
        elif self.path != "/export.csv":
            self.send_error(404, "Not Found")
        elif range_header and (match := RANGE.match(range_header)):
            self._send_range(int(match.group(1)))
        else:
            self._send(200, PAYLOAD)

    def _send_range(self, start: int) -> None:
        if start >= len(PAYLOAD):
            self._send(416, b"", {"Content-Range": f"bytes */{len(PAYLOAD)}"})
            return
        end = len(PAYLOAD) - 1
        self._send(206, PAYLOAD[start:], {"Content-Range": f"bytes {start}-{end}/{len(PAYLOAD)}"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


class ExportServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str | None]]


@pytest.fixture(scope="module")
def server() -> Iterator[ExportServer]:
    httpd = ExportServer(("127.0.0.1", 0), ExportHandler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def base_url(server: ExportServer) -> str:
    server.requests.clear()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just free)."""
    return f"http://127.0.0.1:{helpers.free_port()}/export.csv"


def test_download_writes_the_served_bytes(base_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "raw.csv"

    result = download_export(f"{base_url}/export.csv", dest)

    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()


def test_progress_reports_growing_byte_counts_and_the_total(base_url: str, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []

    download_export(
        f"{base_url}/export.csv",
        tmp_path / "raw.csv",
        on_progress=lambda done, total: calls.append((done, total)),
        chunk_size=1024,
    )

    done = [d for d, _ in calls]
    assert len(calls) >= len(PAYLOAD) // 1024
    assert done == sorted(done) and done[-1] == len(PAYLOAD)
    assert {total for _, total in calls} == {len(PAYLOAD)}


def test_partial_download_is_resumed_with_a_range(
    server: ExportServer, base_url: str, tmp_path: Path
) -> None:
    dest = tmp_path / "raw.csv"
    partial_path(dest).write_bytes(PAYLOAD[:1000])
    calls: list[tuple[int, int | None]] = []

    download_export(f"{base_url}/export.csv", dest, on_progress=lambda d, t: calls.append((d, t)))

    assert server.requests == [("/export.csv", "bytes=1000-")]
    assert dest.read_bytes() == PAYLOAD
    assert calls[0] == (1000, len(PAYLOAD))


def test_complete_partial_download_is_just_renamed(base_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "raw.csv"
    partial_path(dest).write_bytes(PAYLOAD)  # the server answers 416: nothing left to send

    download_export(f"{base_url}/export.csv", dest)

    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_the_range_restarts_the_download(
    server: ExportServer, base_url: str, tmp_path: Path
) -> None:
    dest = tmp_path / "raw.csv"
    partial_path(dest).write_bytes(b"stale bytes of another file")

    download_export(f"{base_url}/norange.csv", dest)

    assert server.requests[0][1] is not None  # a Range was asked for, and ignored
    assert dest.read_bytes() == PAYLOAD


def test_http_404_names_the_status_and_url(base_url: str, tmp_path: Path) -> None:
    url = f"{base_url}/missing.csv"

    with pytest.raises(FetchError, match="HTTP 404") as excinfo:
        download_export(url, tmp_path / "raw.csv")

    assert url in str(excinfo.value)
    assert not (tmp_path / "raw.csv").exists()


def test_unreachable_server_suggests_synthetic_data(tmp_path: Path) -> None:
    url = closed_port_url()

    with pytest.raises(FetchError, match="bikecount data synth") as excinfo:
        download_export(url, tmp_path / "raw.csv", timeout=5)

    assert f"could not reach {url}" in str(excinfo.value)
    assert not (tmp_path / "raw.csv").exists()


def test_cli_fetch_writes_the_file(base_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "raw.csv"

    result = CliRunner().invoke(
        app, ["data", "fetch", "--url", f"{base_url}/export.csv", "--output", str(dest)]
    )

    assert result.exit_code == 0, result.output
    assert dest.read_bytes() == PAYLOAD
    assert "downloaded" in result.output


def test_cli_fetch_offline_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "fetch", "--url", closed_port_url(), "--output", str(tmp_path / "raw.csv")]
    )

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    assert "error: could not reach" in text and "bikecount data synth" in text
    assert "Traceback" not in text
