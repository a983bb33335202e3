"""docker-compose.yaml run for real: the images built from deploy/Dockerfile, the data sets made
through the documented one-shot service, the default, ``legacy`` and ``orchestration`` profiles
up, and the seed's sequence through the published ports (health, MLflow UI, POST /train in test
mode, POST /predict, the legacy /predict), hot reload of the API code, an Airflow DAG run that
reaches the API, and ``down`` leaving no container.

The engine is the one running, else ``dockerd`` started here (``deploy/ci/docker_engine.py``).
The registry images the files name are stand-ins built here from Debian packages
(``deploy/ci/standin_images.py``): the project's Dockerfile and compose file are used unchanged.
They run in a copy of the repository's files in a folder of the test's, so that the containers
write there and the hot-reload edit never touches the repository; ports are free ones, published
on 127.0.0.1 only.

Figures (build times, image sizes, time to a healthy stack) are printed in pytest's summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from compose_project import ComposeProject
from docker_engine import compose_command, docker_engine
from servers import answers
from standin_images import ensure_registry_images

import helpers
from helpers import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

PROJECT = "bikecount-test"
# What the images and the compose file are made of (the Dockerfile's build context among them).
PROJECT_FILES = (
    "docker-compose.yaml",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "src",
    "dags",
    "deploy",
)
PROFILES = ("legacy", "orchestration", "data")
BUILT_IMAGES = ("bikecount-api:dev", "bikecount-airflow:dev")
# ./data belongs to this uid on the "host": the containers must write as it.
DATA_OWNER = 4242
IMAGE_USER = 1000
HEALTH_TIMEOUT = 420
AIRFLOW_TIMEOUT = 600
PIPELINE_DAY = "2021-06-01"  # inside the 13 generated months of `bikecount data prepare`
RECORD = {
    "nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
    "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00",
    "coordonnées_géographiques": "48.86462,2.35014",
}


@dataclass
class Stack(ComposeProject):
    """The compose project of the test, with the times of its steps."""

    timings: dict[str, float] = field(default_factory=dict)


def copy_project(root: Path) -> None:
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    (root / "data").mkdir()
    os.chown(root / "data", DATA_OWNER, DATA_OWNER)


def waited(check: Any, timeout: float, what: str, stack: Stack, *services: str) -> float:
    """Call ``check`` until it returns true; the seconds it took. Fails with the logs."""
    return helpers.wait_until(check, timeout, what, lambda: stack.logs(*services), interval=2)


def healthy(url: str) -> bool:
    return answers(url, timeout=5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, figures: list[str]) -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.fail("the container test runs as root (dockerd, debootstrap, a foreign uid)")
    command = compose_command()
    if command is None:
        pytest.fail("no docker compose: apt-get install docker-compose (make system-deps)")
    root = tmp_path_factory.mktemp("compose")
    copy_project(root)
    # The dashboard (default profile) comes up too: on a free port as well.
    names = ("mlflow", "api", "classmodel", "airflow", "dashboard")
    ports = dict(zip(names, helpers.free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIKECOUNT_", "GCP_"))}
    env.update(
        BIKECOUNT_HOST="127.0.0.1",
        BIKECOUNT_MLFLOW_PORT=str(ports["mlflow"]),
        BIKECOUNT_API_PORT=str(ports["api"]),
        BIKECOUNT_CLASSMODEL_PORT=str(ports["classmodel"]),
        BIKECOUNT_AIRFLOW_PORT=str(ports["airflow"]),
        BIKECOUNT_DASHBOARD_PORT=str(ports["dashboard"]),
    )
    with docker_engine(root / "dockerd.log"):
        stack = Stack(PROJECT, PROFILES, root, command, env, ports, figures)
        stack.compose("down", "--volumes", "--remove-orphans")  # a previous run's leftovers
        started = time.monotonic()
        standins = ensure_registry_images(REPO, PROFILES)
        figures.append(f"docker: registry stand-ins {standins.outcomes}")
        figures.append(
            f"docker: stand-ins made in {time.monotonic() - started:.0f} s "
            + str({tag: round(seconds) for tag, seconds in standins.timings.items()})
        )
        started = time.monotonic()
        stack.compose("build", timeout=3000)
        figures.append(
            f"docker: compose build of the project images {time.monotonic() - started:.0f} s"
        )
        for image in BUILT_IMAGES:
            size = subprocess.run(
                ["docker", "image", "inspect", "--format", "{{.Size}}", image],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            figures.append(f"docker: image {image} {int(size) / 1e9:.2f} GB")
        try:
            yield stack
        finally:
            stack.compose("down", "--volumes", "--remove-orphans", check=False)


def test_the_data_service_makes_the_data_sets_as_the_folder_owner(stack: Stack) -> None:
    started = time.monotonic()
    # As documented: no --profile, `run` enables the service's own.
    stack.compose("run", "--rm", "-T", "data", profiles=(), timeout=900)
    stack.figures.append(f"docker: compose run --rm data {time.monotonic() - started:.0f} s")
    data = stack.root / "data"
    for name in ("reference_data.csv", "current_data.csv", "test_sample.csv"):
        assert (data / name).stat().st_size > 0, name
        assert (data / name).stat().st_uid == DATA_OWNER, name


def test_the_stack_comes_up_healthy_on_loopback(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", profiles=("legacy",))
    for service, path in (("mlflow", "/health"), ("api", "/health"), ("classmodel", "/health")):
        url = stack.url(service) + path
        waited(lambda url=url: healthy(url), HEALTH_TIMEOUT, url, stack)
    stack.figures.append(
        f"docker: compose up to a healthy stack {time.monotonic() - started:.0f} s"
    )

    published = subprocess.run(
        ["docker", "port", "mlflow-server"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert published[-1] == f"127.0.0.1:{stack.ports['mlflow']}", published
    ui = httpx.get(stack.url("mlflow"), timeout=10)
    assert ui.status_code == 200 and "<title>MLflow</title>" in ui.text
    # The folders Docker made for MLflow were handed to the image's user, who wrote in them.
    assert (stack.root / "mlruns_dev" / "mlflow.db").stat().st_uid == IMAGE_USER
    assert (stack.root / "mlflow_artifacts").stat().st_uid == IMAGE_USER


def train(stack: Stack, model_type: str) -> dict[str, Any]:
    body = {"model_type": model_type, "data_source": "reference", "env": "dev", "test_mode": True}
    answer = httpx.post(f"{stack.url('api')}/train", json=body, timeout=600)
    assert answer.status_code == 200, (answer.text, stack.logs("regmodel-backend"))
    return answer.json()


def test_train_then_predict_through_the_containers(stack: Stack) -> None:
    trained = train(stack, "rf")
    assert trained["model_type"] == "rf" and trained["model_version"] >= 1

    records = [RECORD, {**RECORD, "date_et_heure_de_comptage": "2021-06-01T03:00:00+02:00"}]
    answer = httpx.post(
        f"{stack.url('api')}/predict", json={"model_type": "rf", "records": records}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["predictions"]) == 2 and min(body["predictions"]) >= 0
    assert body["predictions"][0] > body["predictions"][1]  # 8 am beats 3 am
    # The artifacts went through MLflow's proxy into the host folder, as the image's user.
    models = list((stack.root / "mlflow_artifacts").rglob("MLmodel"))
    assert models and models[0].stat().st_uid == IMAGE_USER


def unseen_warnings(stack: Stack) -> int:
    logs = stack.compose("logs", "--no-color", "classmodel-backend", profiles=("legacy",))
    return logs.count("unseen counter")


def test_the_legacy_api_classifies_with_one_pass(stack: Stack) -> None:
    train(stack, "rf_class")
    refreshed = httpx.get(f"{stack.url('classmodel')}/refresh_model", timeout=120)
    assert refreshed.status_code == 200, refreshed.text
    before = unseen_warnings(stack)
    unseen = {**RECORD, "nom_du_compteur": "Compteur jamais vu"}

    answer = httpx.post(
        f"{stack.url('classmodel')}/predict", json={"records": [unseen]}, timeout=60
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["label"][0] in {"faible", "forte"}
    # One request, one pass through the features: the warning is logged once.
    waited(lambda: unseen_warnings(stack) > before, 30, "the unseen-counter warning", stack)
    assert unseen_warnings(stack) == before + 1


def test_an_edit_of_the_api_code_is_served_without_a_rebuild(stack: Stack) -> None:
    app_file = stack.root / "src" / "bikecount" / "api" / "regmodel.py"
    text = app_file.read_text()
    assert 'title="bikecount RegModel API"' in text
    app_file.write_text(
        text.replace('"bikecount RegModel API"', '"bikecount RegModel API, edited"')
    )

    def edited() -> bool:
        answer = httpx.get(f"{stack.url('api')}/openapi.json", timeout=5)
        return answer.json()["info"]["title"] == "bikecount RegModel API, edited"

    seconds = waited(edited, HEALTH_TIMEOUT, "the edited API", stack, "regmodel-backend")
    stack.figures.append(f"docker: hot reload of an API edit served after {seconds:.0f} s")
    assert healthy(f"{stack.url('api')}/health")


def airflow(stack: Stack, method: str, path: str, payload: dict | None = None) -> dict:
    answer = httpx.request(method, f"{stack.url('airflow')}/api/v2{path}", json=payload, timeout=30)
    assert answer.status_code < 300, answer.text
    return answer.json()


def run_dag(stack: Stack, dag_id: str) -> dict:
    run = airflow(
        stack,
        "POST",
        f"/dags/{dag_id}/dagRuns",
        {"logical_date": None, "conf": {"day": PIPELINE_DAY}},
    )

    def finished() -> bool:
        nonlocal run
        run = airflow(stack, "GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
        return run["state"] in ("success", "failed")

    waited(finished, AIRFLOW_TIMEOUT, f"{dag_id} run", stack, "airflow-scheduler")
    return run


def stored_predictions(day: str) -> int:
    query = f"SELECT count(*) FROM predictions WHERE day = '{day}'"
    done = subprocess.run(
        ["docker", "exec", "bikecount-airflow-db", "psql", "-U", "airflow", "-d", "bikecount",
         "-tAc", query],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(done.stdout.strip())


def test_an_airflow_dag_run_reaches_the_api(stack: Stack) -> None:
    train(stack, "ensemble")  # the pipeline's default model type (BIKECOUNT_PIPELINE_MODEL_TYPE)
    started = time.monotonic()
    stack.compose("up", "-d", profiles=("legacy", "orchestration"))
    health = f"{stack.url('airflow')}/api/v2/monitor/health"
    waited(lambda: healthy(health), AIRFLOW_TIMEOUT, "Airflow", stack, "airflow-apiserver")
    stack.figures.append(
        f"docker: Airflow profile healthy after {time.monotonic() - started:.0f} s"
    )
    dag_ids = {"bikecount_daily_ingest", "bikecount_daily_predict"}

    def parsed() -> bool:
        return {d["dag_id"] for d in airflow(stack, "GET", "/dags")["dags"]} >= dag_ids

    waited(parsed, AIRFLOW_TIMEOUT, "the DAGs", stack, "airflow-dag-processor")
    for dag_id in dag_ids:
        airflow(stack, "PATCH", f"/dags/{dag_id}", {"is_paused": False})

    assert run_dag(stack, "bikecount_daily_ingest")["state"] == "success", stack.logs(
        "airflow-scheduler"
    )
    assert run_dag(stack, "bikecount_daily_predict")["state"] == "success", stack.logs(
        "airflow-scheduler"
    )

    # Tomorrow's forecast, every hour of every counter, came from the API's ensemble champion.
    tomorrow = "2021-06-02"
    forecast = stored_predictions(tomorrow)
    assert forecast > 0 and forecast % 24 == 0
    metrics = httpx.get(f"{stack.url('api')}/metrics", timeout=10).text
    served = re.search(
        r'^bikecount_predictions_total\{model_type="ensemble"\} ([\d.e+]+)$', metrics, re.M
    )
    assert served is not None and float(served.group(1)) >= forecast


def test_down_leaves_no_container(stack: Stack) -> None:
    # As documented: name the profiles that were started.
    stack.compose("down", profiles=("legacy", "orchestration"))
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert left == []
