"""An API killed mid-training (SIGKILL, no chance to clean up), then started again: the run it left
RUNNING is marked FAILED with the reason, jobs of the dead process are answered from MLflow, the
champion is untouched. Another API instance sharing the MLflow server leaves the run alone.

Real processes: one ``mlflow server``, RegModel APIs started, killed and started again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_server import (
    REGMODEL_APP,
    ServerProcess,
    api_env,
    running,
    start_api,
    start_mlflow,
    wait_for_job,
    write_test_data,
)
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG_GBM = {"model_type": "gbm", "hyperparams": {"max_iter": 4000}, "wait": False}


def start_instance(root: Path, mlflow: ServerProcess, instance: str) -> ServerProcess:
    env = api_env(root, mlflow.url, api_instance=instance)
    api = start_api(f"regmodel-{instance}", REGMODEL_APP, root, env)
    api.wait_healthy()
    return api


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api_restart")
    write_test_data(root / "data")
    return root


@pytest.fixture(scope="module")
def mlflow(root: Path) -> Iterator[ServerProcess]:
    server = start_mlflow(root / "mlflow")
    with running(server):
        yield server


def test_a_run_left_running_by_a_killed_api_is_failed_at_its_next_start(
    root: Path, mlflow: ServerProcess
) -> None:
    client = MlflowClient(mlflow.url, mlflow.url)
    alpha = start_instance(root, mlflow, "alpha")
    beta = None
    try:
        with httpx.Client(base_url=alpha.url, timeout=180) as api:
            done = api.post("/train", json={"model_type": "gbm", "test_mode": True})
            assert done.status_code == 200, done.text
            finished = done.json()
            champion = client.get_model_version_by_alias("bikecount-gbm", "champion").version
            accepted = api.post("/train", json=LONG_GBM)
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            wait_until(
                lambda: (api.get(f"/train/{job_id}").json()["stage"] or "").startswith("fitting"),
                120,
                "fitting",
            )
        [run] = client.search_runs(
            [client.get_experiment_by_name("bikecount-dev").experiment_id],
            filter_string=f"tags.job_id = '{job_id}'",
        )
        assert run.data.tags["api_instance"] == "alpha" and run.info.status == "RUNNING"

        # Another instance on the same MLflow does not touch alpha's run, and knows its jobs.
        beta = start_instance(root, mlflow, "beta")
        time.sleep(3)  # its check of orphaned runs, at start
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        seen = httpx.get(f"{beta.url}/train/{finished['job_id']}", timeout=60).json()
        assert seen["status"] == "succeeded" and seen["result"] == finished

        os.killpg(alpha.process.pid, signal.SIGKILL)  # no lifespan, no cleanup
        alpha.process.wait(timeout=30)
        alpha.stopped = True
        assert client.get_run(run.info.run_id).info.status == "RUNNING", "left as it was"

        alpha = start_instance(root, mlflow, "alpha")
        wait_until(
            lambda: client.get_run(run.info.run_id).info.status == "FAILED",
            60,
            "marked FAILED",
        )
        tags = client.get_run(run.info.run_id).data.tags
        assert "the API that ran this training (alpha" in tags["stopped_because"]
        with httpx.Client(base_url=alpha.url, timeout=60) as api:
            job = api.get(f"/train/{job_id}").json()
            assert job["status"] == "failed" and job["model_type"] == "gbm"
            assert "stopped before it ended" in job["error"]["message"]
            earlier = api.get(f"/train/{finished['job_id']}").json()
            assert earlier["status"] == "succeeded" and earlier["result"] == finished
            assert api.get(f"/train/{'0' * 32}").status_code == 404
            assert api.delete(f"/train/{job_id}").status_code == 409
            again = api.post("/train", json={"model_type": "rf", "test_mode": True, "wait": False})
            assert again.status_code == 202, "the slot is free"
            assert wait_for_job(api, again.json()["job_id"], timeout=180)["status"] == "succeeded"
        current = client.get_model_version_by_alias("bikecount-gbm", "champion").version
        assert current == champion
    finally:
        for server in (alpha, beta):
            if server is not None:
                server.stop()
    assert "Traceback" not in alpha.log(), alpha.log()
