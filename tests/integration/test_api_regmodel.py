"""The RegModel and ClassModel APIs as real processes, over HTTP, against a real MLflow server.

One stack serves the module: the session's ``mlflow server`` (under this module's prefix), the
RegModel API and the ClassModel API, each a subprocess on a free port, with an API key and
the champion re-checked on every request (``BIKECOUNT_MODEL_CHECK_SECONDS=0``). Tests that
need trained models ask for them through ``champions``, which trains in test mode what is
missing, so any test can run alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pandas as pd
import pytest
from servers import (
    CLASSMODEL_APP,
    REGMODEL_APP,
    ServerProcess,
    Tracking,
    api_env,
    running,
    start_api,
    wait_for_job,
    write_test_data,
)

import helpers
from bikecount.data.io import read_records
from bikecount.records import COORDINATES, COUNTER, TIMESTAMP

pytestmark = pytest.mark.integration

API_KEY = "test-key-5b1f"
SEED_TRAIN = {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True}


@dataclass
class Stack:
    mlflow: Tracking
    regmodel: ServerProcess
    classmodel: ServerProcess
    current: pd.DataFrame  # records of the current data set, export spelling, every column


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking: Tracking) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("api_stack")
    settings = write_test_data(root / "data")
    env = api_env(root, tracking, model_check_seconds=0, api_key=API_KEY)
    regmodel = start_api("regmodel", REGMODEL_APP, root, env)
    classmodel = start_api("classmodel", CLASSMODEL_APP, root, env)
    current = read_records(settings.dataset_path("current")).fillna("")
    with running(regmodel, classmodel):
        yield Stack(tracking, regmodel, classmodel, current)
    for server in (regmodel, classmodel):
        assert API_KEY not in server.log(), f"the API key leaked into the {server.name} log"
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the RegModel API that sends the API key."""
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.regmodel.url, timeout=180, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def legacy(stack: Stack) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.classmodel.url, timeout=60, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def champions(api: httpx.Client) -> dict[str, int]:
    """The champion version of rf and rf_class, trained in test mode when there is none."""
    versions = {}
    for model_type in ("rf", "rf_class"):
        listed = api.get("/models", params={"model_type": model_type}).json()["models"]
        crowned = [v["version"] for v in listed if v["champion"]]
        if not crowned:
            trained = api.post("/train", json={**SEED_TRAIN, "model_type": model_type})
            assert trained.status_code == 200, trained.text
            crowned = [trained.json()["model_version"]]
        versions[model_type] = crowned[0]
    return versions


def records_of(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.to_dict(orient="records")


def predict(api: httpx.Client, records: list[dict[str, object]], **options: object) -> dict:
    response = api.post("/predict", json={"records": records, **options})
    assert response.status_code == 200, response.text
    return response.json()


def test_seed_curl_sequence(stack: Stack, api: httpx.Client, legacy: httpx.Client) -> None:
    health = api.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["mlflow"] == {"uri": stack.mlflow.url, "reachable": True}

    trained = api.post("/train", json=SEED_TRAIN)
    assert trained.status_code == 200, trained.text
    result = trained.json()
    assert result["status"] == "succeeded" and result["model_type"] == "rf"
    assert result["model_uri"] == f"models:/{stack.mlflow.name('rf')}/{result['model_version']}"
    assert set(result["metrics"]) == {"rmse", "mae", "r2", "rmse_log1p"}
    run = httpx.get(
        f"{stack.mlflow.url}/api/2.0/mlflow/runs/get", params={"run_id": result["run_id"]}
    )
    assert run.status_code == 200, "the run id must be a real MLflow run"

    records = records_of(stack.current.head(3))
    served = predict(api, records)
    assert served["count"] == 3 and len(served["predictions"]) == 3
    assert all(value >= 0 for value in served["predictions"])
    assert served["model_version"] == result["model_version"] and served["labels"] is None

    classifier = api.post("/train", json={**SEED_TRAIN, "model_type": "rf_class"})
    assert classifier.status_code == 200, classifier.text
    answer = legacy.post("/predict", json={"records": records})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["predictions"]) <= {0, 1}
    assert body["label"] == [("faible", "forte")[p] for p in body["predictions"]]
    assert body["model_version"] == classifier.json()["model_version"]


def test_both_spellings_give_the_same_numbers(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    rows = stack.current.sample(12, random_state=3)
    export = predict(api, records_of(rows))["predictions"]
    snake = predict(api, records_of(helpers.to_snake_case(rows)))["predictions"]
    mixed = records_of(rows.head(6)) + records_of(helpers.to_snake_case(rows.tail(6)))
    # Forests sum their trees in parallel threads: the last bits may differ between calls.
    assert snake == pytest.approx(export, rel=1e-9)
    assert predict(api, mixed)["predictions"] == pytest.approx(export, rel=1e-9)


def test_predictions_keep_the_input_order(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    records = records_of(
        stack.current.sample(30, random_state=5)[[COUNTER, TIMESTAMP, COORDINATES]]
    )
    forward = predict(api, records)["predictions"]
    backward = predict(api, records[::-1])["predictions"]
    assert backward == pytest.approx(forward[::-1], rel=1e-9)
    for index in (0, 17):
        alone = predict(api, [records[index]])["predictions"][0]
        assert math.isclose(alone, forward[index], rel_tol=1e-9)


def test_rf_class_predictions_carry_labels(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    served = predict(api, records_of(stack.current.head(4)), model_type="rf_class")
    assert served["model_version"] == champions["rf_class"]
    assert served["labels"] == [("faible", "forte")[int(p)] for p in served["predictions"]]


def test_intervals_bound_each_prediction_when_asked_and_only_then(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    records = records_of(stack.current.sample(20, random_state=7))

    plain = predict(api, records)
    narrow = predict(api, records, interval=0.5)
    wide = predict(api, records, interval=0.8)

    assert "lower" not in plain and "upper" not in plain
    assert wide["predictions"] == pytest.approx(plain["predictions"], rel=1e-9)
    for answer in (narrow, wide):
        bounds = zip(answer["lower"], answer["predictions"], answer["upper"], strict=True)
        assert all(0 <= low <= value <= high for low, value, high in bounds)
    assert all(w <= n for w, n in zip(wide["lower"], narrow["lower"], strict=True))
    assert all(w >= n for w, n in zip(wide["upper"], narrow["upper"], strict=True))
    # The dashboard asks for intervals only where the schema offers them.
    schema = api.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    assert "interval" in schema["properties"]


def test_unknown_counter_is_predicted_as_the_nearest_known_one(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    """The promise is the nearest known counter's prediction (not merely a count >= 0, which
    the clip in inference.py guarantees whatever the model does)."""
    known = stack.current.iloc[0]
    # Where a known counter stands, under a name no model has seen: that counter is the nearest.
    place = {COORDINATES: str(known[COORDINATES]), TIMESTAMP: "2020-12-01T08:00:00+01:00"}
    records = [{COUNTER: str(known[COUNTER]), **place}, {COUNTER: "999 rue Inconnue N-S", **place}]
    served = predict(api, records)
    assert served["count"] == 2
    assert served["predictions"][1] == pytest.approx(served["predictions"][0], rel=1e-9)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({TIMESTAMP: "2100-06-01T08:00:00+02:00"}, 200),
        ({TIMESTAMP: "2021-10-31T02:30:00+01:00"}, 200),  # the repeated hour, with its offset
        ({TIMESTAMP: "2021-06-01T06:00:00Z"}, 200),
        ({TIMESTAMP: "2021-06-01"}, 200),
        ({COORDINATES: "48.70, 2.15"}, 200),
        ({COUNTER: "\U0001f6b2 piste ñ" * 500}, 200),
        ({COUNTER: 12345}, 200),
        ({"Comptage horaire": "not a number", "extra": None}, 200),
        ({TIMESTAMP: "2021-03-28T02:30:00"}, 422),  # no such local hour
        ({TIMESTAMP: "0001-01-01T00:00:00+00:00"}, 422),
        ({TIMESTAMP: 1622530800}, 422),
        ({COORDINATES: "nan,nan"}, 422),
        ({"Comptage horaire": -5}, 422),
    ],
)
def test_odd_records_are_predicted_or_refused(
    api: httpx.Client, champions: dict[str, int], changes: dict[str, object], status: int
) -> None:
    record = {
        COUNTER: "Face au 20 avenue Denfert-Rochereau N-S",
        TIMESTAMP: "2020-10-01T08:00:00+02:00",
        COORDINATES: "48.839328,2.336515",
        **changes,
    }
    for model_type in ("rf", "rf_class"):
        response = api.post("/predict", json={"records": [record], "model_type": model_type})
        assert response.status_code == status, response.text


@pytest.mark.parametrize("field", ["extra", "Comptage horaire", COUNTER])
def test_a_huge_integer_is_422_on_both_apis_with_a_model_loaded(
    stack: Stack, api: httpx.Client, legacy: httpx.Client, champions: dict[str, int], field: str
) -> None:
    good = records_of(stack.current.head(1)[[COUNTER, TIMESTAMP, COORDINATES]])[0]
    huge = json.dumps({**good, field: "HUGE"}).replace('"HUGE"', "1" + "0" * 400)
    body = f'{{"records": [{json.dumps(good)}, {huge}]}}'
    for client in (api, legacy):
        response = client.post(
            "/predict", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "records", 1, field]


def test_metric_picks_the_best_registered_version(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    versions = api.get("/models", params={"model_type": "rf"}).json()["models"]
    best_r2 = max(versions, key=lambda v: (v["metrics"]["r2"], v["version"]))["version"]
    best_rmse = max(versions, key=lambda v: (-v["metrics"]["rmse"], v["version"]))["version"]
    records = records_of(stack.current.head(2))
    assert predict(api, records, metric="r2")["model_version"] == best_r2
    assert predict(api, records, metric="rmse")["model_version"] == best_rmse
    wrong = api.post("/predict", json={"records": records, "metric": "f1_score"})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "metric"]


def test_new_champion_is_served_without_restart(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    records = records_of(stack.current.head(5))
    before = predict(api, records)
    full = {"model_type": "rf", "data_source": "reference", "hyperparams": {"n_estimators": 10}}
    trained = api.post("/train", json=full)
    assert trained.status_code == 200, trained.text
    assert trained.json()["champion"], trained.json()["champion_reason"]
    after = predict(api, records)
    assert after["model_version"] == trained.json()["model_version"] != before["model_version"]
    assert api.get("/health").json()["models"]["rf"] == after["model_version"]


def test_second_training_is_refused_and_predictions_continue(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    first = api.post(
        "/train", json={"model_type": "gbm", "hyperparams": {"max_iter": 100}, "wait": False}
    )
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert first.json()["status_url"] == f"/train/{job_id}"
    second = api.post("/train", json={**SEED_TRAIN, "wait": False})
    assert second.status_code == 409 and job_id in second.json()["detail"]
    assert second.headers["location"] == f"/train/{job_id}"
    assert predict(api, records_of(stack.current.head(2)))["count"] == 2
    job = wait_for_job(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["model_type"] == "gbm" and job["result"]["job_id"] == job_id


def test_models_lists_versions_and_one_champion_per_type(
    api: httpx.Client, champions: dict[str, int]
) -> None:
    listed = api.get("/models").json()
    assert listed["count"] == len(listed["models"]) >= 2
    for model_type in ("rf", "rf_class"):
        crowned = [v for v in listed["models"] if v["model_type"] == model_type and v["champion"]]
        assert len(crowned) == 1


def test_missing_champion_says_how_to_train_one(api: httpx.Client, stack: Stack) -> None:
    response = api.post(
        "/predict", json={"records": records_of(stack.current.head(1)), "model_type": "nn"}
    )
    assert response.status_code == 404
    assert "POST /train" in response.json()["detail"]


def test_write_endpoints_need_the_api_key(
    stack: Stack, api: httpx.Client, champions: dict[str, int]
) -> None:
    anonymous = httpx.Client(base_url=stack.regmodel.url, timeout=60)
    wrong = {"X-API-Key": "not-the-key"}
    assert anonymous.post("/train", json=SEED_TRAIN).status_code == 401
    assert anonymous.post("/train", json=SEED_TRAIN, headers=wrong).status_code == 401
    assert anonymous.post("/models/reload").status_code == 401
    assert httpx.get(f"{stack.classmodel.url}/refresh_model").status_code == 401
    assert API_KEY not in anonymous.post("/models/reload", headers=wrong).text
    assert (
        anonymous.post("/predict", json={"records": records_of(stack.current.head(1))}).status_code
        == 200
    )

    accepted = api.post("/train", json={**SEED_TRAIN, "wait": False})
    assert accepted.status_code == 202
    assert wait_for_job(api, accepted.json()["job_id"])["status"] == "succeeded"
    reloaded = api.post("/models/reload")
    assert reloaded.status_code == 200 and reloaded.json()["models"]["rf"] is not None
    refreshed = httpx.get(
        f"{stack.classmodel.url}/refresh_model", headers={"X-API-Key": API_KEY}, timeout=120
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["models"] == {"rf_class": champions["rf_class"]}


def test_classmodel_health_lists_only_the_classifier(legacy: httpx.Client) -> None:
    health = legacy.get("/health").json()
    assert health["status"] == "ok" and list(health["models"]) == ["rf_class"]


def test_data_source_cannot_leave_the_data_folder(api: httpx.Client) -> None:
    refused = api.post("/train", json={"model_type": "rf", "data_source": "../../etc/passwd"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "data_source"]


def test_a_holdout_after_the_data_is_a_clear_422(api: httpx.Client) -> None:
    body = {"model_type": "rf", "test_mode": True, "holdout_from": "2031-01-01"}
    response = api.post("/train", json=body)
    assert response.status_code == 422, response.text
    assert "holdout from 2031-01-01: the data has no record from that day" in response.text
