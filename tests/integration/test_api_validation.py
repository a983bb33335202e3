"""Bad input never reaches a model: 4xx with the field and the reason, never a 500.

The RegModel app is built in this process (``create_app``) on a local SQLite tracking store (no
MLflow server: nothing here trains or predicts), with an API key and a small bound on records so
that 413 is cheap to reach, and called through Starlette's ``TestClient``, which runs the app's
lifespan for the whole module. That lifespan starts the fork server trainings would fit in: the
one process this module starts, hence its ``integration`` mark. An exception the app does not
handle fails the test that raised it, and an error logged with its traceback, or raised in one of
the app's threads, fails the module. Hand-written cases come first, then a property-based fuzz of
the OpenAPI schema (schemathesis, calling the same app in-process) over every operation,
``POST /train`` included: the app's data folder is empty, so each training request is refused
while it is checked (fields, hyperparameters, paths) and none can start.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.types import ASGIApp, Receive, Scope, Send

from bikecount.api.regmodel import create_app
from bikecount.config import Settings
from bikecount.model_types import MODEL_TYPES
from bikecount.records import COORDINATES, COUNTER, TIMESTAMP

pytestmark = [
    pytest.mark.integration,
    # A traceback in one of the app's threads (model preloading, the orphaned-runs watch).
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

API_KEY = "validation-key-77"
MAX_RECORDS = 40
MAX_EXAMPLES = 25  # per operation and mode: about 5 s in all, in-process, on two busy cores
RECORD = {
    COUNTER: "Face au 20 avenue Denfert-Rochereau N-S",
    TIMESTAMP: "2020-10-01T08:00:00+02:00",
    COORDINATES: "48.839328,2.336515",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The RegModel app on a local SQLite store, with an API key and an empty data folder; no
    setting comes from the caller's environment, and none the app makes outlives the module."""
    root = tmp_path_factory.mktemp("api_validation")
    (root / "data").mkdir()  # no data set on purpose: no training can start
    write_damaged_files(root / "data" / "damaged")
    (root / "outside.csv").write_text("not inside the data folder\n")
    with own_environment(root), logged_tracebacks() as tracebacks:
        app_settings = Settings(
            _env_file=None,
            env="dev",
            mlflow_tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            data_dir=root / "data",
            mlruns_dir=root / "mlruns",
            artifacts_dir=root / "artifacts",
            api_key=API_KEY,
            max_records=MAX_RECORDS,
        )
        yield create_app(app_settings)
    assert not tracebacks, "\n".join(logging.Formatter().format(record) for record in tracebacks)


@pytest.fixture(scope="module")
def api(app: FastAPI) -> Iterator[TestClient]:
    """A client that sends the API key; the app's lifespan runs while it is open."""
    headers = {"X-API-Key": API_KEY}
    with TestClient(app, headers=headers, raise_server_exceptions=True) as client:
        yield client
        assert client.get("/models").json()["count"] == 0, "a training ran"


@contextmanager
def own_environment(cwd: Path) -> Iterator[None]:
    """Run from ``cwd`` without the caller's ``BIKECOUNT_*`` and ``MLFLOW_*`` variables, as a
    server started on its own would; put back the environment and MLflow's URIs afterwards
    (the app sets both: MLflow's request bounds, the tracking URI its trainings log to)."""
    environ, uris = dict(os.environ), (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    here = Path.cwd()
    for name in environ:
        if name.startswith(("BIKECOUNT_", "MLFLOW_")):
            del os.environ[name]
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        mlflow.set_tracking_uri(uris[0])
        mlflow.set_registry_uri(uris[1])
        os.environ.clear()
        os.environ.update(environ)


@contextmanager
def logged_tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Collect every record logged with an exception, MLflow's own (which stop at its logger)
    included: what a server's log would show as a traceback."""
    found: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info or record.exc_text:
                found.append(record)

    handler = Collect(level=logging.INFO)
    loggers = [logging.getLogger(), logging.getLogger("mlflow")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield found
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def write_damaged_files(folder: Path) -> None:
    """Record files a reader chokes on: gzip cut in half, gzip with a bad CRC, deflate data
    damaged in the middle, bytes that are no text, and a parquet file cut in half."""
    folder.mkdir(parents=True)
    lines = [";".join(RECORD)] + [";".join(RECORD.values())] * 3000
    text = ("\n".join(lines) + "\n").encode()
    packed = gzip.compress(text, mtime=0)
    (folder / "half.csv.gz").write_bytes(packed[: len(packed) // 2])
    crc = bytearray(packed)
    crc[-8] ^= 0xFF  # the trailer's CRC32
    (folder / "bad_crc.csv.gz").write_bytes(bytes(crc))
    middle = bytearray(packed)
    middle[len(middle) // 2 : len(middle) // 2 + 8] = b"\xff" * 8
    (folder / "middle.csv.gz").write_bytes(bytes(middle))
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 20)
    parquet = folder / "half.parquet"
    pd.DataFrame([RECORD] * 100).to_parquet(parquet)
    parquet.write_bytes(parquet.read_bytes()[:300])


DAMAGED = {
    "half.csv.gz": "cut short",
    "bad_crc.csv.gz": "damaged",
    "middle.csv.gz": "damaged",
    "binary.csv": "not UTF-8 text",
    "half.parquet": "cannot be read as a record file",
}


def detail_locs(response: httpx.Response) -> list[list[object]]:
    return [item["loc"] for item in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"records": []}, ["body", "records"]),
        ({}, ["body", "records"]),
        ({"records": "abc"}, ["body", "records"]),
        ({"records": [1, 2]}, ["body", "records", 0]),
        ({"records": [{**RECORD, COUNTER: {"nested": 1}}]}, ["body", "records", 0, COUNTER]),
        ({"records": [RECORD], "model_type": "svm"}, ["body", "model_type"]),
        ({"records": [RECORD], "model_type": 3}, ["body", "model_type"]),
        ({"records": [RECORD], "metric": "accuracy_top5"}, ["body", "metric"]),
        ({"records": [RECORD], "unexpected": True}, ["body", "unexpected"]),
        ({"records": [RECORD], "interval": 0}, ["body", "interval"]),
        ({"records": [RECORD], "interval": 1}, ["body", "interval"]),
        ({"records": [RECORD], "interval": 80}, ["body", "interval"]),
        ({"records": [RECORD], "interval": -0.5}, ["body", "interval"]),
        ({"records": [RECORD], "interval": "0.8"}, ["body", "interval"]),
        ({"records": [RECORD], "interval": True}, ["body", "interval"]),
        ({"records": [RECORD], "model_type": "rf_class", "interval": 0.8}, ["body", "interval"]),
        ([RECORD], ["body"]),
    ],
)
def test_malformed_predict_bodies_are_422(api: TestClient, body: object, loc: list) -> None:
    response = api.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert loc in detail_locs(response)


def test_unknown_model_type_names_the_valid_ones(api: TestClient) -> None:
    response = api.post("/predict", json={"records": [RECORD], "model_type": "svm"})
    message = response.json()["detail"][0]["msg"]
    assert all(name in message for name in ("'rf'", "'gbm'", "'nn'", "'rf_class'"))


def test_invalid_records_are_listed_by_row_and_column(api: TestClient) -> None:
    records = [
        RECORD,
        {**RECORD, TIMESTAMP: "yesterday at eight"},
        {COUNTER: "x", TIMESTAMP: "2020-10-01T08:00:00+02:00"},  # no coordinates
        {**RECORD, COORDINATES: "51.5,-0.12"},  # London
    ]
    response = api.post("/predict", json={"records": records})
    assert response.status_code == 422
    items = {(item["row"], item["column"]) for item in response.json()["detail"]}
    assert items == {(1, TIMESTAMP), (2, COORDINATES), (3, COORDINATES)}


HUGE = "1" + "0" * 400  # beyond what a float holds: pandas and numpy overflow on it


@pytest.mark.parametrize(
    ("field", "value"),
    [("extra", HUGE), ("Comptage horaire", HUGE), (COUNTER, HUGE), ("extra", str(2**64))],
)
@pytest.mark.parametrize("path", ["/predict", "/monitor"])
def test_an_integer_beyond_64_bits_is_422_naming_row_and_column(
    api: TestClient, path: str, field: str, value: str
) -> None:
    # Written by hand: the JSON integer must reach the server as digits, not as a float.
    record = json.dumps({**RECORD, field: "HUGE"}).replace('"HUGE"', value)
    body = f'{{"records": [{json.dumps(RECORD)}, {record}]}}'
    response = api.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "records", 1, field] and "64 bits" in item["msg"]


def test_missing_column_in_every_record_is_named(api: TestClient) -> None:
    response = api.post("/predict", json={"records": [{COUNTER: "x", TIMESTAMP: "2020-10-01"}]})
    assert response.status_code == 422
    assert ["body", "records", COORDINATES] in detail_locs(response)


def test_unparsable_json_and_nan_values_are_422(api: TestClient) -> None:
    headers = {"content-type": "application/json"}
    broken = api.post("/predict", content=b'{"records": [', headers=headers)
    assert broken.status_code == 422
    # Python's JSON parser accepts NaN and Infinity; they must not break the error's JSON.
    nan = api.post("/predict", content=b'{"records": NaN, "model_type": Infinity}', headers=headers)
    assert nan.status_code == 422 and nan.json()["detail"]


def test_too_many_records_is_413(api: TestClient) -> None:
    response = api.post("/predict", json={"records": [RECORD] * (MAX_RECORDS + 1)})
    assert response.status_code == 413
    assert f"at most {MAX_RECORDS}" in response.json()["detail"]
    huge = api.post(
        "/predict", content=b"x" * 10_000_000, headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413

    chunked = asyncio.run(post_in_chunks(api.app, "/predict", [b" " * 10_000] * 100))
    assert chunked.status_code == 413


async def post_in_chunks(app: ASGIApp, path: str, chunks: list[bytes]) -> httpx.Response:
    """POST ``chunks`` with no Content-Length, each its own ASGI message as a server passes an
    upload on (the TestClient reads a body whole first): the bound must apply as bytes arrive."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {"content-type": "application/json", "X-API-Key": API_KEY}
        return await client.post(path, content=body(), headers=headers)


def test_no_champion_is_404_with_how_to_train(api: TestClient) -> None:
    response = api.post("/predict", json={"records": [RECORD]})
    assert response.status_code == 404
    assert "POST /train" in response.json()["detail"]


@pytest.mark.parametrize(
    "source",
    ["../../etc/passwd", "/etc/passwd", "data/../../outside.csv", "../outside.csv", "."],
)
def test_data_source_outside_the_data_folder_is_refused(api: TestClient, source: str) -> None:
    response = api.post("/train", json={"model_type": "rf", "data_source": source})
    assert response.status_code == 422, response.text
    assert detail_locs(response) == [["body", "data_source"]]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"hyperparams": {"n_estimators": "many"}}, "hyperparams", "n_estimators"),
        ({"hyperparams": {"n_trees": 10}}, "hyperparams", "unknown hyperparameter"),
        ({"hyperparams": {"max_features": 2.0}}, "hyperparams", "max_features"),
        # The ensemble's hyperparameters are its members', prefixed; a member's check names it.
        ({"model_type": "ensemble", "hyperparams": {"n_estimators": 10}}, "hyperparams", "unknown"),
        ({"model_type": "ensemble", "hyperparams": {"rf_n_jobs": 0}}, "hyperparams", "rf_n_jobs"),
        ({"data_source": "missing.csv"}, "data_source", "not found"),
        ({"data_source": "bad\u0000name.csv"}, "data_source", "control characters"),
        ({"data_source": "é" * 200 + ".csv"}, "data_source", ""),
        ({"env": "prod"}, "env", "BIKECOUNT_GCS_BUCKET"),
        ({"model_type": "xgboost"}, "model_type", "'rf'"),
        ({"test_mode": "sometimes"}, "test_mode", ""),
        ({"holdout_from": "June"}, "holdout_from", "date"),
    ],
)
def test_training_is_checked_before_it_starts(
    api: TestClient, body: dict, field: str, reason: str
) -> None:
    response = api.post("/train", json={"model_type": "rf", **body})
    assert response.status_code == 422, response.text
    item = response.json()["detail"][0]
    assert item["loc"] == ["body", field] and reason in item["msg"]


@pytest.mark.parametrize(("name", "reason"), DAMAGED.items())
def test_a_damaged_training_file_is_422_naming_it_and_what_is_wrong(
    api: TestClient, name: str, reason: str
) -> None:
    body = {"model_type": "rf", "data_source": f"damaged/{name}"}
    response = api.post("/train", json=body)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "data_source"]
    assert name in item["msg"] and reason in item["msg"]


@pytest.mark.parametrize(("name", "reason"), DAMAGED.items())
def test_a_damaged_monitoring_file_is_422_on_its_own_field(
    api: TestClient, name: str, reason: str
) -> None:
    path = f"damaged/{name}"
    as_current = api.post("/monitor", json={"reference": path, "current": path})
    assert as_current.status_code == 422, as_current.text
    [item] = as_current.json()["detail"]
    assert item["loc"] == ["body", "current"] and name in item["msg"] and reason in item["msg"]
    as_reference = api.post("/monitor", json={"reference": path, "records": [RECORD]})
    assert as_reference.status_code == 422, as_reference.text
    assert as_reference.json()["detail"][0]["loc"] == ["body", "reference"]


def test_write_endpoints_refuse_missing_or_wrong_keys(api: TestClient) -> None:
    keys: list[str | bytes] = ["", "wrong", API_KEY + "x", "ünïcode".encode("latin-1")]
    for headers in ({"X-API-Key": key} for key in keys):
        for path in ("/train", "/models/reload"):
            # The request's header replaces the client's.
            response = api.post(path, json={"model_type": "rf"}, headers=headers)
            assert response.status_code == 401, (path, headers)
    request = api.build_request("POST", "/train", json={"model_type": "rf"})
    del request.headers["X-API-Key"]
    anonymous = api.send(request)
    assert anonymous.status_code == 401 and API_KEY not in anonymous.text


def test_unknown_job_is_404(api: TestClient) -> None:
    assert api.get("/train/does-not-exist").status_code == 404


def test_docs_and_schema_examples(api: TestClient) -> None:
    assert "swagger" in api.get("/docs").text.lower()
    assert "redoc" in api.get("/redoc").text.lower()
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    for name in ("PredictRequest", "PredictionsPublic", "TrainRequestBody", "TrainPublic"):
        assert schemas[name].get("examples"), f"{name} has no example"


def test_health_on_a_local_store(api: TestClient) -> None:
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["mlflow"]["reachable"] is True
    assert health["models"] == dict.fromkeys(MODEL_TYPES)
    assert Path(health["mlflow"]["uri"].removeprefix("sqlite:///")).name == "mlflow.db"


# The fuzz: operations are listed rather than discovered so that each is a test of its own; the
# first test checks the list is complete, so a new endpoint cannot escape.
OPERATIONS = [
    ("POST", "/predict"),
    ("POST", "/train"),
    ("GET", "/train/{job_id}"),
    ("DELETE", "/train/{job_id}"),
    ("GET", "/models"),
    ("POST", "/models/reload"),
    ("GET", "/health"),
    ("POST", "/monitor"),
]
# Schema-invalid requests exist only where a body or a constrained parameter does.
NEGATABLE = {
    ("POST", "/predict"),
    ("POST", "/train"),
    ("GET", "/models"),
    ("POST", "/models/reload"),
    ("POST", "/monitor"),
}
FUZZ_CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or (method, path) in NEGATABLE
]


@pytest.fixture(scope="module")
def api_schema(api: TestClient) -> schemathesis.BaseSchema:
    """The app's schema, its operations called in-process (an exception the app raises fails
    the example), on the app whose lifespan ``api`` runs."""
    return schemathesis.openapi.from_asgi("/openapi.json", lifespan_answered(api.app))


def lifespan_answered(app: ASGIApp) -> ASGIApp:
    """``app`` with its lifespan events answered rather than passed on.

    Schemathesis runs the lifespan of each app it calls (once, until the interpreter exits);
    this one's already runs under the TestClient, and a second would start its threads twice.
    """

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            event = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{event}.complete"})
            if event == "lifespan.shutdown":
                return

    return call


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    listed = {(method.upper(), path) for path, item in api_schema.items() for method in item}
    assert listed == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), FUZZ_CASES)
def test_fuzzed_requests_never_get_a_server_error(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    """Schema-valid (positive) and schema-invalid (negative) requests: 2xx or 4xx, never 5xx,
    and every documented answer matches its schema."""

    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same cases on every run: a failure can be replayed
        database=None,
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"X-API-Key": API_KEY},
            checks=[not_a_server_error, response_schema_conformance],
            timeout=60,
        )

    call()
