"""The dashboard's client of ``POST /predict`` and a version trained before intervals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bikecount.dashboard import api_client

RECORD = {"nom_du_compteur": "a", "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00"}


class OldVersionApi(BaseHTTPRequestHandler):
    """Answers as the API does when its champion carries no interval calibration."""

    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        if "interval" in body:
            status, answer = 409, {"detail": "gbm v1 carries no interval calibration"}
        else:
            status = 200
            answer = {"predictions": [7.0], "model_type": "gbm", "model_version": 1, "count": 1}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def old_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OldVersionApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_version_without_intervals_still_forecasts_without_them(old_api: str) -> None:
    OldVersionApi.bodies.clear()

    answer = api_client.predict(old_api, [RECORD], "gbm", interval=0.8)

    assert answer["predictions"] == [7.0] and "lower" not in answer
    assert [body.get("interval") for body in OldVersionApi.bodies] == [0.8, None]
