"""docker-compose.yaml's ``fleet`` profile run for real: two RegModel replicas behind HAProxy,
MLflow on PostgreSQL, Prometheus scraping each replica. A new champion reaches every replica
without a restart; Prometheus tells the replicas apart; under steady ``/predict`` traffic the
replica running a ``POST /train`` is killed (SIGKILL, as the kernel's OOM killer does) and comes
back by itself: no request fails, the training's run ends FAILED, the champion is untouched.

The engine, the stand-ins of registry images and the copy of the project are made as in
``test_compose_stack`` (read its docstring); this project has a name of its own and no fixed
container names, so both tests may run at once. Ports are free ones on 127.0.0.1. Bounded: the
traffic stops after ``TRAFFIC_MAX_REQUESTS`` or when the test ends, every wait has a limit.
Figures (time to a healthy fleet, the outage, requests per replica) go to pytest's summary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from compose_project import ComposeProject
from docker_engine import compose_command, docker_engine
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from servers import write_test_data
from standin_images import StandIns

import helpers

pytestmark = [pytest.mark.scale, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
PROJECT = "bikecount-fleet-test"
PROJECT_FILES = ("docker-compose.yaml", ".dockerignore", "pyproject.toml", "README.md", "src",
                 "dags", "deploy")  # fmt: skip
PROFILE = "fleet"
ENTRY_POINTS = ("fleet-balancer", "fleet-prometheus")  # `up` brings the rest as dependencies
REPLICAS = ("regmodel-1", "regmodel-2")
REPLICA_HEADER = "X-Bikecount-Replica"
HEALTH_TIMEOUT = 420
CHAMPION_TIMEOUT = 60  # BIKECOUNT_MODEL_CHECK_SECONDS is 10
COMEBACK_TIMEOUT = 240
TRAFFIC_CLIENTS = 2
TRAFFIC_MAX_REQUESTS = 20_000
RECORDS = [
    {"nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
     "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00",
     "coordonnées_géographiques": "48.86462,2.35014"},
]  # fmt: skip
WEAK_RF = {
    "model_type": "rf",
    "test_mode": True,
    "hyperparams": {"n_estimators": 1, "max_depth": 1},
}
LONG_GBM = {"model_type": "gbm", "hyperparams": {"max_iter": 4000}, "wait": False}


@dataclass
class Fleet(ComposeProject):
    """The fleet's compose project: its replicas, containers and MLflow."""

    def waited(self, check: Callable[[], Any], timeout: float, what: str, *services: str) -> float:
        return helpers.wait_until(check, timeout, what, lambda: self.logs(*services), interval=1)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).split()[-1]

    def mlflow(self) -> MlflowClient:
        url = self.url("mlflow")
        return MlflowClient(url, url)  # both: MLflow's global registry URI may name another store


def registry_images() -> set[str]:
    """The registry images of the fleet's services and of the Dockerfile its replicas build."""
    images = set(re.findall(r"^FROM\s+(\S+)", (REPO / "deploy" / "Dockerfile").read_text(), re.M))
    services = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    for service in services.values():
        if PROFILE in service.get("profiles", []) and "build" not in service:
            images.add(service["image"])
    return images


def copy_project(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    write_test_data(root / "data")  # 8 counters over 3 months: test-mode fits take seconds


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, figures: list[str]) -> Iterator[Fleet]:
    if os.geteuid() != 0:
        pytest.fail("the fleet test runs as root (dockerd, debootstrap, killing a container)")
    command = compose_command()
    if command is None:
        pytest.fail("no docker compose: apt-get install docker-compose (make system-deps)")
    root = tmp_path_factory.mktemp("fleet")
    copy_project(root)
    names = ("api", "mlflow", "prometheus")
    ports = dict(zip(names, helpers.free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIKECOUNT_", "GCP_"))}
    env.update(
        BIKECOUNT_HOST="127.0.0.1",
        BIKECOUNT_API_PORT=str(ports["api"]),
        BIKECOUNT_MLFLOW_PORT=str(ports["mlflow"]),
        BIKECOUNT_PROMETHEUS_PORT=str(ports["prometheus"]),
    )
    with docker_engine(root / "dockerd.log"):
        fleet = Fleet(PROJECT, (PROFILE,), root, command, env, ports, figures)
        fleet.compose("down", "--volumes", "--remove-orphans")  # a previous run's leftovers
        standins = StandIns()
        started = time.monotonic()
        for image in sorted(registry_images()):
            standins.ensure(image)
        figures.append(
            f"fleet: registry stand-ins {standins.outcomes} in {time.monotonic() - started:.0f} s"
        )
        started = time.monotonic()
        fleet.compose("build", *REPLICAS, timeout=3000)
        figures.append(f"fleet: compose build of the replicas {time.monotonic() - started:.0f} s")
        try:
            started = time.monotonic()
            fleet.compose("up", "-d", *ENTRY_POINTS)
            fleet.waited(lambda: set(replicas_answering(fleet)) == set(REPLICAS),
                         HEALTH_TIMEOUT, "both replicas behind the balancer")  # fmt: skip
            figures.append(f"fleet: up to two healthy replicas {time.monotonic() - started:.0f} s")
            yield fleet
        finally:
            fleet.compose("down", "--volumes", "--remove-orphans", check=False)


def replicas_answering(fleet: Fleet, tries: int = 6) -> set[str]:
    """The replicas the balancer sent ``tries`` health checks to that answered 200."""
    seen = set()
    for _ in range(tries):
        try:
            answer = httpx.get(f"{fleet.url('api')}/health", timeout=5)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            seen.add(answer.headers[REPLICA_HEADER])
    return seen


def train(fleet: Fleet, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{fleet.url('api')}/train", json={"data_source": "reference", **body},
                        timeout=600)  # fmt: skip
    assert answer.status_code == 200, (answer.text, fleet.logs(*REPLICAS))
    return answer.json()


def job_state(fleet: Fleet, job_id: str) -> dict[str, Any]:
    """``GET /train/{job_id}`` through the balancer: whichever replica answers knows the job."""
    answer = httpx.get(f"{fleet.url('api')}/train/{job_id}", timeout=30)
    assert answer.status_code == 200, (answer.headers.get(REPLICA_HEADER), answer.text)
    return answer.json()


def job_run(fleet: Fleet, job_id: str) -> Run | None:
    """The MLflow run of a training job, None while it has not started one."""
    client = fleet.mlflow()
    experiment = client.get_experiment_by_name("bikecount-dev")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.job_id = '{job_id}'")
    assert len(runs) <= 1, f"{len(runs)} runs of job {job_id}"
    return runs[0] if runs else None


def run_status(fleet: Fleet, job_id: str) -> str | None:
    run = job_run(fleet, job_id)
    return None if run is None else run.info.status


def served_versions(fleet: Fleet, model_type: str, requests: int = 8) -> dict[str, int]:
    """The model version each replica answered ``/predict`` with, over a few requests."""
    versions = {}
    for _ in range(requests):
        body = {"model_type": model_type, "records": RECORDS}
        answer = httpx.post(f"{fleet.url('api')}/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        versions[answer.headers[REPLICA_HEADER]] = answer.json()["model_version"]
    return versions


def test_a_new_champion_is_served_by_every_replica_without_a_restart(fleet: Fleet) -> None:
    weak = train(fleet, WEAK_RF)
    assert weak["champion"], weak
    first = dict.fromkeys(REPLICAS, weak["model_version"])
    fleet.waited(lambda: served_versions(fleet, "rf") == first, CHAMPION_TIMEOUT,
                 "the first champion on both replicas")  # fmt: skip
    better = train(fleet, {"model_type": "rf", "test_mode": True})
    assert better["champion"], better["champion_reason"]
    expected = dict.fromkeys(REPLICAS, better["model_version"])
    seconds = fleet.waited(lambda: served_versions(fleet, "rf") == expected, CHAMPION_TIMEOUT,
                           "the new champion on both replicas", *REPLICAS)  # fmt: skip
    fleet.figures.append(f"fleet: a new champion served by both replicas after {seconds:.0f} s")


def prometheus(fleet: Fleet, path: str, **params: str) -> Any:
    answer = httpx.get(f"{fleet.url('prometheus')}/api/v1/{path}", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_prometheus_scrapes_each_replica_as_its_own_instance(fleet: Fleet) -> None:
    def targets_up() -> bool:
        targets = prometheus(fleet, "targets")["activeTargets"]
        up = {t["labels"]["instance"] for t in targets
              if t["labels"]["job"] == "regmodel" and t["health"] == "up"}  # fmt: skip
        return up == {f"{name}:8000" for name in REPLICAS}

    fleet.waited(targets_up, 60, "both replicas scraped", "fleet-prometheus")

    def served_by_instance() -> dict[str, float]:
        query = "sum by (instance) (bikecount_predictions_total)"
        result = prometheus(fleet, "query", query=query)["result"]
        return {r["metric"]["instance"]: float(r["value"][1]) for r in result}

    fleet.waited(lambda: len(served_by_instance()) == len(REPLICAS), 60, "predictions by replica")
    assert all(count > 0 for count in served_by_instance().values())


@dataclass
class Traffic:
    """Clients sending ``POST /predict`` through the balancer, one request after the other each,
    until stopped or ``TRAFFIC_MAX_REQUESTS``: every answer's time, status and replica."""

    url: str
    answers: list[tuple[float, int, str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for _ in range(TRAFFIC_CLIENTS):
            thread = threading.Thread(target=self._send, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _send(self) -> None:
        body = {"model_type": "rf", "records": RECORDS}
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set() and len(self.answers) < TRAFFIC_MAX_REQUESTS:
                sent = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/predict", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                replica = answer.headers.get(REPLICA_HEADER, "")
                self.answers.append((sent, answer.status_code, replica, time.monotonic() - sent))
                if answer.status_code != 200:
                    self.errors.append(
                        f"{answer.status_code} from {replica!r}: {answer.text[:300]}"
                    )
                time.sleep(0.02)

    def served_by(self, replica: str, after: float) -> int:
        return sum(1 for sent, _, name, _ in self.answers if name == replica and sent > after)


def test_a_replica_killed_under_traffic_fails_no_request_and_its_training(fleet: Fleet) -> None:
    champion = train(fleet, {"model_type": "gbm", "test_mode": True})
    assert champion["champion"], champion
    with Traffic(fleet.url("api")) as traffic:
        fleet.waited(lambda: all(traffic.served_by(r, 0) for r in REPLICAS), 60, "traffic on both")
        accepted = httpx.post(f"{fleet.url('api')}/train", json=LONG_GBM, timeout=60)
        assert accepted.status_code == 202, accepted.text
        job_id, victim = accepted.json()["job_id"], accepted.headers[REPLICA_HEADER]
        # Killed once its run exists in MLflow: before that, only its replica knows the job.
        fleet.waited(lambda: run_status(fleet, job_id) == "RUNNING", 120,
                     "the training's run started", victim)  # fmt: skip
        container = fleet.container(victim)
        before = inspect(container, "{{.RestartCount}}")
        os.kill(int(inspect(container, "{{.State.Pid}}")), signal.SIGKILL)  # no cleanup at all
        killed = time.monotonic()
        fleet.waited(lambda: inspect(container, "{{.RestartCount}}") != before, 60,
                     "the killed replica restarted by its policy", victim)  # fmt: skip
        fleet.waited(lambda: traffic.served_by(victim, killed) > 0, COMEBACK_TIMEOUT,
                     f"{victim} serving again", victim)  # fmt: skip
        back = min(sent for sent, _, name, _ in traffic.answers if name == victim and sent > killed)
        time.sleep(2)  # both replicas serving again

    assert traffic.errors == [], traffic.errors[:10]
    answers = traffic.answers
    outage = [latency for sent, _, _, latency in answers if killed <= sent < back]
    assert outage, "no request was sent while the replica was down"
    # Its champions load on first use: the returned replica's first answers are the slow ones.
    first = [latency for sent, _, name, latency in answers if name == victim and back <= sent]
    by_replica = Counter(name for _, _, name, _ in answers)
    fleet.figures.append(
        f"fleet: {len(answers)} predictions, none failed ({dict(by_replica)}); {victim} killed, "
        f"serving again after {back - killed:.0f} s; slowest answer while it was down "
        f"{max(outage):.2f} s, slowest of its first answers back {max(first):.2f} s"
    )

    # The replica's start marked its orphaned run FAILED; any replica answers for the job.
    fleet.waited(lambda: job_state(fleet, job_id)["status"] == "failed", 120,
                 "the killed training marked FAILED", victim)  # fmt: skip
    job = job_state(fleet, job_id)
    assert job["error"]["type"] == "ApiStopped", job
    assert f"the API that ran this training ({victim}," in job["error"]["message"]
    run = job_run(fleet, job_id)
    assert run is not None and run.info.status == "FAILED", run
    assert run.data.tags["api_instance"] == victim
    crowned = fleet.mlflow().get_model_version_by_alias("bikecount-gbm", "champion")
    assert int(crowned.version) == champion["model_version"]
    memory = {name: docker("stats", "--no-stream", "--format", "{{.MemUsage}}",
                           fleet.container(name)) for name in REPLICAS}  # fmt: skip
    fleet.figures.append(f"fleet: memory of the replicas after serving rf and gbm {memory}")


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def inspect(container: str, template: str) -> str:
    return docker("inspect", "--format", template, container)
