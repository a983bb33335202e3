"""Bounded training, for real: a costly request is refused before any run, a running training is
cancelled (``DELETE /train/{job_id}``, Ctrl-C of ``bikecount train``) or stopped by its time
limit, its MLflow run is marked, the slot is freed and the champion is untouched.

The session's ``mlflow server`` and two RegModel API processes: one with a low cost limit, one
with a time limit of a few seconds. A gradient boosting of 4,000 iterations on the reference
data fits for a minute or more here; each test stops one long before its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from servers import (
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
from bikecount.data.io import read_records, write_records
from bikecount.records import COUNTER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIKECOUNT = Path(sys.executable).parent / "bikecount"
LONG_GBM = {"model_type": "gbm", "hyperparams": {"max_iter": 4000}}
TIME_LIMIT_SECONDS = 8
# The cost-limited API: 4,000 iterations pass, 10,000 do not (the evaluation fit and the refit
# on every row counted: about 52 s and 130 s estimated on the test data).
MAX_FIT_SECONDS = 80


@dataclass
class Stack:
    root: Path
    mlflow: Tracking
    api: ServerProcess  # cost limit MAX_FIT_SECONDS
    timed: ServerProcess  # time limit TIME_LIMIT_SECONDS

    @property
    def client(self) -> MlflowClient:
        return self.mlflow.client

    def champion(self, model_type: str = "gbm") -> int:
        return self.mlflow.champion(model_type)

    def runs(self) -> list[Run]:
        experiment = self.mlflow.experiment_id("dev")
        return [] if experiment is None else self.client.search_runs([experiment])

    def run_of(self, job: dict) -> Run:
        [run] = [r for r in self.runs() if r.info.start_time >= job["started_at"] * 1000 - 1000]
        return run


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking: Tracking) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("training_limits")
    write_test_data(root / "data")
    api = start_api(
        "regmodel",
        REGMODEL_APP,
        root,
        api_env(root, tracking, model_check_seconds=0, train_max_fit_seconds=MAX_FIT_SECONDS),
    )
    timed = start_api(
        "timed",
        REGMODEL_APP,
        root,
        api_env(root, tracking, train_time_limit_seconds=TIME_LIMIT_SECONDS),
    )
    with running(api, timed):
        stack = Stack(root, tracking, api, timed)
        with httpx.Client(base_url=api.url, timeout=180) as client:
            seeded = client.post("/train", json={"model_type": "gbm", "test_mode": True})
            assert seeded.status_code == 200, seeded.text
        yield stack
    for server in (api, timed):
        assert "Traceback" not in server.log(), server.log()


def fit_children(pid: int) -> list[psutil.Process]:
    """The processes fitting a model for process ``pid`` (an API, the CLI): children of its
    fork server. Processes that end while they are looked at are left out."""
    servers = []
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone, or a zombie not yet reaped
            if "multiprocessing.forkserver" in " ".join(process.cmdline()):
                servers.append(process)
    children = []
    for server in servers:
        with contextlib.suppress(psutil.Error):
            children.extend(server.children())
    return children


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still alive; zombies are dead (only their exit status is left to collect)."""
    left = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
    return left


def wait_until_fitting(client: httpx.Client, job_id: str, timeout: float = 120) -> None:
    job: dict = {}

    def fitting() -> bool:
        job.update(client.get(f"/train/{job_id}").json())
        assert job["status"] in ("queued", "running"), job
        return (job["stage"] or "").startswith("fitting")

    helpers.wait_until(fitting, timeout, f"job {job_id} fitting", lambda: str(job), interval=0.2)


@pytest.mark.parametrize(
    ("hyperparams", "names", "limit"),
    [
        ({"max_iter": 10000}, ["max_iter="], f"BIKECOUNT_TRAIN_MAX_FIT_SECONDS={MAX_FIT_SECONDS}"),
        (
            {"n_estimators": 2000, "max_leaf_nodes": None, "min_samples_leaf": 1},
            ["n_estimators=2000", "max_leaf_nodes=None", "min_samples_leaf=1"],
            "BIKECOUNT_TRAIN_MAX_MODEL_MB=200",
        ),
    ],
)
def test_a_costly_training_is_refused_before_any_run(
    stack: Stack, hyperparams: dict, names: list[str], limit: str
) -> None:
    model_type = "gbm" if "max_iter" in hyperparams else "rf"
    runs, champion = len(stack.runs()), stack.champion()
    body = {"model_type": model_type, "hyperparams": hyperparams}
    response = httpx.post(f"{stack.api.url}/train", json=body, timeout=120)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "hyperparams"]
    assert "training too costly" in item["msg"] and limit in item["msg"]
    assert all(name in item["msg"] for name in names)
    assert len(stack.runs()) == runs, "no MLflow run was created"
    assert stack.champion() == champion


@pytest.mark.parametrize(
    ("model_type", "hyperparams", "named"),
    [
        ("rf", {"n_jobs": 0}, "n_jobs"),
        ("rf", {"n_estimators": True}, "n_estimators"),
        ("gbm", {"max_iter": False}, "max_iter"),
        ("rf", {"max_leaf_nodes": 2**64}, "max_leaf_nodes"),
        ("nn", {"refit": 1}, "refit"),
    ],
)
def test_hyperparameters_that_fit_would_refuse_are_422_before_any_run(
    stack: Stack, model_type: str, hyperparams: dict, named: str
) -> None:
    runs = len(stack.runs())
    body = {"model_type": model_type, "hyperparams": hyperparams}
    response = httpx.post(f"{stack.api.url}/train", json=body, timeout=60)
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "hyperparams"] and named in item["msg"]
    assert "training failed" not in item["msg"], "refused while checked, not in fitting"
    assert len(stack.runs()) == runs, "no MLflow run was created"


def test_nn_on_too_few_rows_is_422_before_any_run(stack: Stack) -> None:
    reference = read_records(stack.root / "data" / "reference_data.csv")
    one_counter = reference[reference[COUNTER] == reference[COUNTER].iloc[0]]
    write_records(one_counter.head(3), stack.root / "data" / "three_hours.csv")
    runs = len(stack.runs())
    body = {"model_type": "nn", "data_source": "three_hours.csv"}
    response = httpx.post(f"{stack.api.url}/train", json=body, timeout=60)
    assert response.status_code == 422, response.text
    assert "validation_fraction" in response.json()["detail"][0]["msg"]
    assert len(stack.runs()) == runs


def test_delete_cancels_a_running_training_and_frees_the_slot(stack: Stack) -> None:
    champion = stack.champion()
    with httpx.Client(base_url=stack.api.url, timeout=120) as api:
        accepted = api.post("/train", json={**LONG_GBM, "wait": False})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_until_fitting(api, job_id)
        # The model fits in a child process: cancelled once that process runs.
        helpers.wait_until(lambda: fit_children(stack.api.process.pid), 60, "the fit's process")
        busy = api.post("/train", json={"model_type": "rf", "test_mode": True})
        assert busy.status_code == 409

        cancelled = api.delete(f"/train/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        job = cancelled.json()
        assert job["status"] == "cancelled" and job["error"]["status_code"] == 409
        assert "cancelled through DELETE" in job["error"]["message"]
        assert not fit_children(stack.api.process.pid), "the fit in progress was stopped"
        run = stack.run_of(job)
        assert run.info.status == "KILLED"
        assert run.data.tags["stopped_because"].startswith("cancelled through DELETE")

        again = api.delete(f"/train/{job_id}")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
        assert api.delete("/train/no-such-job").status_code == 404
        assert api.get(f"/train/{job_id}").json()["status"] == "cancelled"
        freed = api.post("/train", json={"model_type": "rf", "test_mode": True, "wait": False})
        assert freed.status_code == 202, freed.text
        api.delete(f"/train/{freed.json()['job_id']}")  # the slot was free; no need to fit
    assert stack.champion() == champion


def test_a_training_past_its_time_limit_fails_cleanly(stack: Stack) -> None:
    champion = stack.champion()
    with httpx.Client(base_url=stack.timed.url, timeout=180) as api:
        response = api.post("/train", json=LONG_GBM)
        assert response.status_code == 504, response.text
        detail = response.json()["detail"]
        assert f"time limit of {TIME_LIMIT_SECONDS} s" in detail
        assert not fit_children(stack.timed.process.pid)
        failed = [r for r in stack.runs() if r.info.status == "FAILED"]
        assert any("time limit" in r.data.tags.get("stopped_because", "") for r in failed)
        accepted = api.post("/train", json={"model_type": "rf", "test_mode": True, "wait": False})
        assert accepted.status_code == 202, "the slot is free"
        wait_for_job(api, accepted.json()["job_id"], timeout=180)
    assert stack.champion() == champion


def test_ctrl_c_of_bikecount_train_marks_the_run_killed(stack: Stack) -> None:
    champion = stack.champion()
    env = {**os.environ, **api_env(stack.root, stack.mlflow)}
    before = {run.info.run_id for run in stack.runs()}
    command = [str(BIKECOUNT), "train", "--model", "gbm", "--param", "max_iter=4000"]
    # Its own session, as a terminal's foreground job: Ctrl-C reaches the whole group. SIGINT
    # as a terminal leaves it, not ignored as in a background job (a CI runner may be one).
    train = subprocess.Popen(
        command,
        cwd=stack.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:

        def fitting() -> bool:
            assert train.poll() is None, train.communicate()
            children = fit_children(train.pid)
            # The fit's process ignores Ctrl-C (its parent stops it) once it has started.
            return bool(children) and all(
                helpers.ignores_signal(child, signal.SIGINT) for child in children
            )

        helpers.wait_until(fitting, 180, "the CLI fitting", interval=0.2)
        family = [psutil.Process(train.pid), *psutil.Process(train.pid).children(recursive=True)]
        os.killpg(train.pid, signal.SIGINT)
        out, err = train.communicate(timeout=60)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, signal.SIGKILL)
    assert train.returncode == 130, out + err
    message = " ".join(err.split())
    assert "training stopped: interrupted (Ctrl-C)" in message and "marked KILLED" in message
    assert "the champion is unchanged" in message and "Traceback" not in err
    [run] = [run for run in stack.runs() if run.info.run_id not in before]
    assert run.info.status == "KILLED"
    assert run.data.tags["stopped_because"] == "interrupted (Ctrl-C)"
    helpers.wait_until(
        lambda: not still_running(family),
        30,
        "every process of the training ended",
        lambda: str([p.cmdline() for p in still_running(family)]),
    )
    assert stack.champion() == champion
