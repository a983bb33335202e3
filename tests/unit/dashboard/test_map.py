"""The map of Paris (the shipped arrondissements under the counters) and "Ask the model" for a
whole file: read in any spelling, checked, forecast in batches, given back as a CSV.

The page is run by Streamlit's AppTest against a small stand-in of the RegModel API (health,
OpenAPI schema and ``/predict``) whose forecasts are known, with and without intervals.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import helpers
from bikecount.dashboard import batch, charts
from bikecount.dashboard.api_client import ApiError, PredictAnswer
from bikecount.dashboard.geography import (
    ARRONDISSEMENTS,
    ARRONDISSEMENTS_ATTRIBUTION,
    load_arrondissements,
)
from bikecount.data.io import read_records_from
from bikecount.data.paris_counters import load_paris_counters
from bikecount.records import (
    COORDINATES,
    COUNT,
    COUNTER,
    FIELD_TO_EXPORT,
    TIMESTAMP,
    parse_coordinates,
)

FIELD_NAMES = {label: name for name, label in FIELD_TO_EXPORT.items()}
SNAKE = {
    COUNTER: "nom_du_compteur",
    TIMESTAMP: "date_et_heure_de_comptage",
    COORDINATES: "coordonnées_géographiques",
    COUNT: "comptage_horaire",
}


# --- the map -------------------------------------------------------------------------------


def signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False))


def inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    crossings = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            crossings = not crossings
    return crossings


def test_the_shipped_arrondissements_are_small_attributed_and_drawable() -> None:
    features = load_arrondissements()
    assert [f["properties"]["number"] for f in features] == list(range(1, 21))
    assert features[0]["properties"]["name"] == "Louvre"
    assert ARRONDISSEMENTS.stat().st_size < 150_000
    shipped = json.loads(ARRONDISSEMENTS.read_text(encoding="utf-8"))
    assert {k: shipped[k] for k in ARRONDISSEMENTS_ATTRIBUTION} == ARRONDISSEMENTS_ATTRIBUTION
    assert "ODbL" in shipped["licence"] and "Ville de Paris" in shipped["attribution"]
    for feature in features:
        ring = feature["geometry"]["coordinates"][0]
        props = feature["properties"]
        # Clockwise: d3-geo would read a counter-clockwise exterior as the rest of the globe.
        assert ring[0] == ring[-1] and signed_area(ring) < 0, props["number"]
        assert inside(props["label_lon"], props["label_lat"], ring), props["number"]


def test_the_drawn_city_holds_the_real_counters() -> None:
    counters = load_paris_counters()
    lat, lon = parse_coordinates(counters["coordinates"])
    rings = [f["geometry"]["coordinates"][0] for f in load_arrondissements()]
    within = [any(inside(x, y, ring) for ring in rings) for x, y in zip(lon, lat, strict=True)]
    outside = counters["name"][[not w for w in within]].tolist()
    # Quai d'Issy stands a few metres past the city limit, in Issy-les-Moulineaux.
    assert outside == ["Face au 40 quai D'Issy NE-SO", "Face au 40 quai D'Issy SO-NE"]


def test_the_map_layers_the_counters_over_the_arrondissements() -> None:
    counters = load_paris_counters().head(4)
    lat, lon = parse_coordinates(counters["coordinates"])
    frame = pd.DataFrame(
        {"counter": counters["name"], "lat": lat, "lon": lon, "forecast_total": 1.0, "mae": 0.5}
    )
    spec = charts.map_chart(frame, "forecast_total").to_dict()
    shapes, numbers, points = spec["layer"]
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["geoshape", "text", "circle"]
    assert len(shapes["data"]["values"]) == 20
    assert spec["projection"] == {"type": "mercator"}
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg"
    assert [param["name"] for param in spec["params"]] == [charts.MAP_SELECTION]
    assert points["mark"]["type"] == "circle"
    assert numbers["encoding"]["text"]["field"] == "number"


def test_the_health_mode_gives_each_status_its_colour_and_a_legend_of_all() -> None:
    counters = load_paris_counters().head(3)
    lat, lon = parse_coordinates(counters["coordinates"])
    frame = pd.DataFrame(
        {
            "counter": counters["name"], "lat": lat, "lon": lon, "forecast_total": 1.0,
            "mae": 0.5, "health": ["ok", "outage", None], "health_reason": ["", "zeros", None],
        }
    )  # fmt: skip
    spec = charts.map_chart(frame.fillna({"health": "unknown"}), "health").to_dict()
    points = spec["layer"][2]
    colour = points["encoding"]["color"]
    assert colour["field"] == "health" and colour["type"] == "nominal"
    # Every status in the legend, present on the map or not, each with its own fixed colour.
    assert colour["scale"]["domain"] == ["outage", "stuck", "low", "high", "unknown", "ok"]
    assert len(set(colour["scale"]["range"])) == 6
    assert colour["legend"]["orient"] == "bottom" and colour["title"] == "counter health"
    shown = [tip["field"] for tip in points["encoding"]["tooltip"]]
    assert "health" in shown and "health_reason" in shown
    values = {row["counter"]: row["health"] for row in spec["datasets"].popitem()[1]}
    assert list(values.values()) == ["ok", "unknown", "outage"]  # faults drawn last, on top
    # Without health columns (a frame of an older store) every counter is unknown.
    plain = charts.map_chart(frame.drop(columns=["health", "health_reason"]), "health").to_dict()
    assert {row["health"] for row in plain["datasets"].popitem()[1]} == {"unknown"}


# --- reading and checking an upload --------------------------------------------------------


@pytest.fixture(scope="module")
def labels_rows(small_raw: pd.DataFrame) -> pd.DataFrame:
    """Twelve records in the export's labels, as a CSV gives them (strings)."""
    return small_raw[[COUNTER, TIMESTAMP, COORDINATES, COUNT]].head(12).astype(str)


def as_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(sep=";", index=False).encode("utf-8")


def as_explore_json(frame: pd.DataFrame) -> bytes:
    """The Explore API's answer: field names, coordinates as ``{"lon", "lat"}`` objects."""
    rows = frame.rename(columns=FIELD_NAMES).to_dict("records")
    for row in rows:
        lat, lon = (float(v) for v in row["coordinates"].split(","))
        row["coordinates"] = {"lon": lon, "lat": lat}
    return json.dumps({"total_count": len(rows), "results": rows}).encode()


def as_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


SPELLINGS = {
    "labels.csv": as_csv,
    "field-names.csv": lambda f: as_csv(f.rename(columns=FIELD_NAMES)),
    "labels.csv.gz": lambda f: gzip.compress(as_csv(f)),
    "snake.parquet": lambda f: as_parquet(f.rename(columns=SNAKE)),
    "snake.json": lambda f: json.dumps(f.rename(columns=SNAKE).to_dict("records")).encode(),
    "body.json": lambda f: json.dumps({"records": f.to_dict("records")}).encode(),
    "explore.json": as_explore_json,
}


@pytest.mark.parametrize("name", SPELLINGS)
def test_every_spelling_reads_to_the_same_records(labels_rows: pd.DataFrame, name: str) -> None:
    expected = batch.check_upload(labels_rows).records
    checked = batch.check_upload(batch.read_upload(name, SPELLINGS[name](labels_rows)))
    assert checked.parsed.issues == []
    assert checked.records == expected and len(expected) == 12


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("commas.csv", b"a,b\n1,2\n", "looks comma-separated"),
        ("broken.csv.gz", b"not gzip at all", "not gzip"),
        ("counts.xlsx", b"PK", "unknown file kind"),
        ("text.json", b"{not json", "not JSON text"),
        ("object.json", b'{"rows": []}', "under 'records' or 'results'"),
        ("numbers.json", b"[1, 2]", "a list of records"),
    ],
)
def test_unreadable_files_say_why(name: str, content: bytes, says: str) -> None:
    with pytest.raises(batch.UploadError, match=says):
        batch.read_upload(name, content)


def test_a_missing_column_is_named_in_every_spelling(labels_rows: pd.DataFrame) -> None:
    raw = batch.read_upload("no-place.csv", as_csv(labels_rows.drop(columns=[COORDINATES])))
    with pytest.raises(batch.UploadError) as caught:
        batch.check_upload(raw)
    message = str(caught.value)
    assert "'Coordonnées géographiques'" in message and "'coordinates'" in message


def test_refused_rows_are_listed_and_left_out(labels_rows: pd.DataFrame) -> None:
    raw = labels_rows.copy()
    raw.loc[raw.index[2], TIMESTAMP] = "yesterday"
    raw.loc[raw.index[5], COORDINATES] = "40.7,-74.0"  # New York
    checked = batch.check_upload(batch.read_upload("some-bad.csv", as_csv(raw)))
    assert checked.parsed.dropped_rows == 2 and len(checked.records) == 10
    refused = batch.refused_rows(checked.parsed)
    assert refused["record"].tolist() == [3, 6]
    assert refused["column"].tolist() == [TIMESTAMP, COORDINATES]
    assert refused["value"].tolist() == ["yesterday", "40.7,-74.0"]


def test_empty_too_long_and_all_invalid_files_are_refused(labels_rows: pd.DataFrame) -> None:
    with pytest.raises(batch.UploadError, match="no records"):
        batch.check_upload(labels_rows.head(0))
    with pytest.raises(batch.UploadError, match="12 records; at most 5 per file"):
        batch.check_upload(labels_rows, max_rows=5)
    with pytest.raises(batch.UploadError, match="none of the 12 records is valid"):
        batch.check_upload(labels_rows.assign(**{TIMESTAMP: "soon"}))


# --- the forecast table and its CSV --------------------------------------------------------


def answer(values: list[float], version: int = 3, intervals: bool = False) -> PredictAnswer:
    given: PredictAnswer = {
        "predictions": values,
        "model_type": "gbm",
        "model_version": version,
        "count": len(values),
    }
    if intervals:
        given["lower"] = [v - 1 for v in values]
        given["upper"] = [v + 2 for v in values]
    return given


@pytest.mark.parametrize("intervals", [False, True])
def test_the_table_is_the_valid_rows_plus_their_forecasts(
    labels_rows: pd.DataFrame, intervals: bool
) -> None:
    raw = labels_rows.assign(**{TIMESTAMP: labels_rows[TIMESTAMP].where(labels_rows.index != 0)})
    checked = batch.check_upload(raw)  # the first row has no time: refused
    answers = [answer([1.0] * 6, 3, intervals), answer([2.0] * 5, 4, intervals)]
    table = batch.forecast_table(checked, answers)
    added = ["prediction", "lower", "upper"] if intervals else ["prediction"]
    assert list(table.columns) == [*labels_rows.columns, *added, "model_version"]
    assert table[COUNTER].tolist() == labels_rows[COUNTER].iloc[1:].tolist()
    assert table["prediction"].tolist() == [1.0] * 6 + [2.0] * 5
    assert table["model_version"].tolist() == [3] * 6 + [4] * 5
    if intervals:
        assert (table["lower"] < table["prediction"]).all()
        assert (table["prediction"] < table["upper"]).all()
    again = read_records_from(io.BytesIO(batch.to_csv_bytes(table)), "forecasts.csv")
    assert again[COUNTER].tolist() == table[COUNTER].tolist()
    assert again["prediction"].astype(float).tolist() == table["prediction"].tolist()


def test_intervals_are_left_out_when_a_batch_has_none(labels_rows: pd.DataFrame) -> None:
    checked = batch.check_upload(labels_rows)
    table = batch.forecast_table(checked, [answer([1.0] * 6, intervals=True), answer([1.0] * 6)])
    assert "lower" not in table and "upper" not in table


def test_a_short_answer_is_an_api_error(labels_rows: pd.DataFrame) -> None:
    checked = batch.check_upload(labels_rows)
    with pytest.raises(ApiError, match="answered 11 predictions for 12 records"):
        batch.forecast_table(checked, [answer([1.0] * 11)])


def test_json_coordinates_come_back_as_json_text(labels_rows: pd.DataFrame) -> None:
    checked = batch.check_upload(batch.read_upload("e.json", as_explore_json(labels_rows)))
    table = batch.forecast_table(checked, [answer([1.0] * 12)])
    assert json.loads(table["coordinates"].iloc[0]).keys() == {"lon", "lat"}


# --- the page, against a stand-in API ------------------------------------------------------


@dataclass
class StandInApi:
    """``/health``, ``/openapi.json`` and ``/predict``; a forecast is 10 × the record's hour."""

    url: str = ""
    intervals: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)


def stand_in_handler(api: StandInApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def send(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/health":
                self.send({"status": "ok", "models": {"rf": None, "gbm": 2, "nn": None}})
            else:
                taken = {"records": {}, "model_type": {}}
                if api.intervals:
                    taken["interval"] = {}
                self.send({"components": {"schemas": {"PredictRequest": {"properties": taken}}}})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.requests.append(body)
            hours = [int(r["date_et_heure_de_comptage"][11:13]) for r in body["records"]]
            values = [10.0 * hour for hour in hours]
            answer: dict[str, Any] = {
                "predictions": values,
                "model_type": body["model_type"],
                "model_version": 2,
                "count": len(values),
            }
            if "interval" in body:
                answer["lower"] = [v * 0.5 for v in values]
                answer["upper"] = [v * 1.5 for v in values]
            self.send(answer)

    return Handler


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandInApi]:
    api = StandInApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), stand_in_handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def page_env(
    monkeypatch: pytest.MonkeyPatch, stand_in: StandInApi, tmp_path: Path
) -> Iterator[StandInApi]:
    from bikecount.dashboard.resources import get_config, get_settings

    for name, value in {
        "BIKECOUNT_PIPELINE_API_URL": stand_in.url,
        "BIKECOUNT_MLFLOW_TRACKING_URI": helpers.closed_port_url(),
        "BIKECOUNT_PIPELINE_DB_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "BIKECOUNT_PIPELINE_MODEL_TYPE": "gbm",
        "BIKECOUNT_MAX_RECORDS": "5",
        "BIKECOUNT_DASHBOARD_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.clear()
    get_config.clear()
    stand_in.requests.clear()
    yield stand_in
    get_settings.clear()
    get_config.clear()


def ask_page() -> None:
    from bikecount.dashboard.pages import render_ask

    render_ask()


def upload(name: str, content: bytes) -> AppTest:
    app = AppTest.from_function(ask_page, default_timeout=30).run()
    app.file_uploader(key="ask_file").set_value((name, content, "application/octet-stream"))
    return app.run()


@pytest.mark.parametrize("intervals", [False, True])
def test_a_file_is_forecast_in_batches_within_the_apis_bound(
    page_env: StandInApi, labels_rows: pd.DataFrame, intervals: bool
) -> None:
    page_env.intervals = intervals
    app = upload("labels.csv", as_csv(labels_rows))
    assert not app.exception and not app.error
    assert "12 records, all valid" in app.success[0].value
    app.button(key="ask_file_go").click().run()
    assert not app.exception
    assert [len(body["records"]) for body in page_env.requests] == [5, 5, 2]
    assert all(("interval" in body) == intervals for body in page_env.requests)
    _, table = app.session_state["ask_file_answer"]
    hours = pd.to_datetime(labels_rows[TIMESTAMP], utc=True).dt.tz_convert("Europe/Paris").dt.hour
    assert table["prediction"].tolist() == (10.0 * hours).tolist()
    assert ("lower" in table and "upper" in table) == intervals
    with_or_without = "with" if intervals else "without"
    assert f"12 forecasts by gbm v2, {with_or_without} intervals" in app.subheader[0].value
    assert app.get("download_button")


def test_a_bad_file_is_a_message_not_a_trace(
    page_env: StandInApi, labels_rows: pd.DataFrame
) -> None:
    app = upload("no-counter.csv", as_csv(labels_rows.drop(columns=[COUNTER])))
    assert not app.exception
    assert "no-counter.csv cannot be forecast" in app.error[0].value
    assert "'Nom du compteur'" in app.error[0].value and "'nom_compteur'" in app.error[0].value
    assert page_env.requests == []


def test_refused_rows_are_shown_before_asking(
    page_env: StandInApi, labels_rows: pd.DataFrame
) -> None:
    raw = labels_rows.copy()
    raw.loc[raw.index[0], COUNT] = "-3"
    app = upload("one-bad.csv", as_csv(raw))
    assert not app.exception
    assert any("1 of 12 records refused" in warning.value for warning in app.warning)
    assert app.button(key="ask_file_go").label == "Forecast 11 records"
