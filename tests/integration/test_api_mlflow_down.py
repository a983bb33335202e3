"""When the MLflow server dies, the API keeps serving what it has loaded and says it is degraded,
and what needs MLflow (training, monitoring) is refused within seconds with a 503 naming it.

This module has a tracking server of its own, since it stops it (SIGSTOP: it accepts connections
and never answers), then kills it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from servers import (
    REGMODEL_APP,
    ServerProcess,
    api_env,
    running,
    start_api,
    start_mlflow,
    write_test_data,
)

from bikecount.data.io import read_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Servers:
    mlflow: ServerProcess
    regmodel: ServerProcess
    records: list[dict[str, object]]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("api_mlflow_down")
    settings = write_test_data(root / "data")
    records = read_records(settings.dataset_path("current")).head(4).fillna("")
    mlflow = start_mlflow(root / "mlflow")
    env = api_env(root, mlflow.url, model_check_seconds=0)
    regmodel = start_api("regmodel", REGMODEL_APP, root, env)
    with running(mlflow, regmodel):
        yield Servers(mlflow, regmodel, records.to_dict(orient="records"))


# Generous next to the 2 s reachability probe; MLflow's own client defaults waited minutes.
FAIL_FAST_SECONDS = 20


def assert_refused_fast(api: httpx.Client, path: str, body: dict) -> None:
    started = time.monotonic()
    response = api.post(path, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "MLflow" in response.json()["detail"] and "does not answer" in response.json()["detail"]
    assert elapsed < FAIL_FAST_SECONDS, f"{path} took {elapsed:.0f} s to refuse"


def test_training_and_monitoring_fail_fast_while_mlflow_hangs(servers: Servers) -> None:
    mlflow, regmodel = servers.mlflow, servers.regmodel
    with httpx.Client(base_url=regmodel.url, timeout=120) as api:
        os.killpg(mlflow.process.pid, signal.SIGSTOP)  # up, but answering nothing
        try:
            for _ in range(2):  # the first refusal held no slot: the second is not a 409
                assert_refused_fast(api, "/train", {"model_type": "rf", "test_mode": True})
            assert_refused_fast(api, "/monitor", {"model_type": "rf"})
            assert_refused_fast(api, "/monitor", {"records": servers.records})
            assert api.get("/health").json()["status"] == "degraded"
        finally:
            os.killpg(mlflow.process.pid, signal.SIGCONT)
        trained = api.post("/train", json={"model_type": "rf", "test_mode": True})
        assert trained.status_code == 200, trained.text


def test_cached_model_serves_while_mlflow_is_down(servers: Servers) -> None:
    mlflow, regmodel = servers.mlflow, servers.regmodel
    body = {"records": servers.records}
    with httpx.Client(base_url=regmodel.url, timeout=120) as api:
        trained = api.post("/train", json={"model_type": "rf", "test_mode": True})
        assert trained.status_code == 200, trained.text
        before = api.post("/predict", json=body).json()

        mlflow.stop()

        after = api.post("/predict", json=body)
        assert after.status_code == 200, after.text
        assert after.json()["model_version"] == before["model_version"]
        assert after.json()["predictions"] == pytest.approx(before["predictions"], rel=1e-9)
        health = api.get("/health").json()
        assert health["status"] == "degraded" and health["mlflow"]["reachable"] is False
        assert health["models"]["rf"] == before["model_version"]
        not_loaded = api.post("/predict", json={**body, "model_type": "gbm"})
        assert not_loaded.status_code == 503 and "cannot be reached" in not_loaded.json()["detail"]
        assert api.get("/models").status_code == 503
        assert api.post("/models/reload").status_code == 503
        assert api.post("/predict", json=body).status_code == 200, (
            "a refused reload keeps the cache"
        )
        for _ in range(2):
            assert_refused_fast(api, "/train", {"model_type": "rf", "test_mode": True})
        assert_refused_fast(api, "/monitor", {"model_type": "rf"})
