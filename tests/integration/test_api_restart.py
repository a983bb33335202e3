"""An API killed mid-training (SIGKILL, no chance to clean up), then started again: the run it left
RUNNING is marked FAILED with the reason, jobs of the dead process are answered from MLflow, the
champion is untouched. Another API instance sharing the MLflow server leaves the run alone.

Real processes: the session's ``mlflow server``, RegModel APIs started, killed and started again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from servers import (
    REGMODEL_APP,
    ServerProcess,
    Tracking,
    api_env,
    start_api,
    write_test_data,
)

import helpers
from bikecount.api.job_runs import INSTANCE_TAG, PROCESS_TAG

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG_GBM = {"model_type": "gbm", "hyperparams": {"max_iter": 4000}, "wait": False}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api_restart")
    write_test_data(root / "data")
    return root


@pytest.fixture
def start_instance(root: Path, tracking: Tracking) -> Iterator[Callable[[str], ServerProcess]]:
    """Starts a RegModel API of the given ``api_instance`` on this module's place on MLflow, and
    waits until it is healthy; every API it started is stopped when the test ends."""
    started: list[ServerProcess] = []

    def start_healthy(instance: str) -> ServerProcess:
        env = api_env(root, tracking, api_instance=instance)
        api = start_api(f"regmodel-{instance}", REGMODEL_APP, root, env)
        started.append(api)
        api.wait_healthy()
        return api

    yield start_healthy
    for api in reversed(started):
        api.stop()


def test_a_run_left_running_by_a_killed_api_is_failed_at_its_next_start(
    tracking: Tracking, start_instance: Callable[[str], ServerProcess]
) -> None:
    client = tracking.client
    alpha = start_instance("alpha")
    with httpx.Client(base_url=alpha.url, timeout=180) as api:
        done = api.post("/train", json={"model_type": "gbm", "test_mode": True})
        assert done.status_code == 200, done.text
        finished = done.json()
        champion = tracking.champion("gbm")
        accepted = api.post("/train", json=LONG_GBM)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        helpers.wait_until(
            lambda: (api.get(f"/train/{job_id}").json()["stage"] or "").startswith("fitting"),
            120,
            "fitting",
        )
    [run] = client.search_runs(
        [tracking.experiment_id("dev")],
        filter_string=f"tags.job_id = '{job_id}'",
    )
    assert run.data.tags["api_instance"] == "alpha" and run.info.status == "RUNNING"

    # Another instance on the same MLflow does not touch alpha's run, and knows its jobs.
    # A run of beta's own whose process is gone (no pid is that high) tells when beta's check
    # at start has run.
    beta_orphan = client.create_run(
        run.info.experiment_id, tags={INSTANCE_TAG: "beta", PROCESS_TAG: "4194305@0.000"}
    ).info.run_id
    beta = start_instance("beta")
    helpers.wait_until(
        lambda: client.get_run(beta_orphan).info.status == "FAILED",
        60,
        "beta's check of orphaned runs done",
        beta.log,
    )
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    seen = httpx.get(f"{beta.url}/train/{finished['job_id']}", timeout=60).json()
    assert seen["status"] == "succeeded" and seen["result"] == finished

    os.killpg(alpha.process.pid, signal.SIGKILL)  # no lifespan, no cleanup
    alpha.process.wait(timeout=30)
    alpha.stop()
    assert client.get_run(run.info.run_id).info.status == "RUNNING", "left as it was"

    alpha = start_instance("alpha")
    helpers.wait_until(
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
        api.delete(f"/train/{again.json()['job_id']}")  # no need to fit it
    assert tracking.champion("gbm") == champion
    alpha.stop()  # its log is whole once it has stopped
    assert "Traceback" not in alpha.log(), alpha.log()
