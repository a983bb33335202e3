"""docker-compose.yaml's ``fleet`` profile, deploy/haproxy/haproxy.cfg and
deploy/prometheus/fleet.yml, checked without a Docker engine: the three name the same replicas,
each replica runs what ``bikecount up`` runs with a name of its own, MLflow stores on
PostgreSQL, and the balancer replays only what is safe to replay. tests/integration/test_fleet.py
runs them for real."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from bikecount.stack.addresses import allowed_hosts
from bikecount.stack.commands import MLFLOW_ENV, api_env, mlflow_server_args, uvicorn_args
from bikecount.stack.compose import (
    COMPOSE_ARTIFACT_ROOT,
    COMPOSE_ARTIFACTS,
    COMPOSE_BIND_HOST,
    COMPOSE_PACKAGE_DIR,
    COMPOSE_PORTS,
)
from bikecount.stack.services import MLFLOW, REGMODEL, REGMODEL_APP
from helpers import REPO

HAPROXY_CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "fleet.yml"
PROFILE = "fleet"
REPLICAS = ("regmodel-1", "regmodel-2")
MLFLOW_SERVICE = "fleet-mlflow"
# Published like the default stack's services, at the same settings: a client of one API keeps
# its URL when the fleet replaces it.
PUBLISHED = {
    "fleet-balancer": ("BIKECOUNT_API_PORT", 8000),
    MLFLOW_SERVICE: ("BIKECOUNT_MLFLOW_PORT", 5000),
    "fleet-prometheus": ("BIKECOUNT_PROMETHEUS_PORT", 9090),
}


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with no variable set."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda match: match.group(2), value)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]


@pytest.fixture(scope="module")
def fleet(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if PROFILE in s.get("profiles", [])}


@pytest.fixture(scope="module")
def haproxy() -> dict[str, list[str]]:
    """deploy/haproxy/haproxy.cfg as ``{section header: its lines}``, comments left out."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in HAPROXY_CONFIG.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith(" "):
            current = sections.setdefault(line, [])
        else:
            current.append(line.strip())
    return sections


def test_the_fleet_is_its_own_profile(fleet: dict[str, Any]) -> None:
    assert set(fleet) == {
        "fleet-db",
        MLFLOW_SERVICE,
        *REPLICAS,
        "fleet-balancer",
        "fleet-prometheus",
    }
    for name, service in fleet.items():
        assert service["profiles"] == [PROFILE], name
        # Fixed container names would keep two fleets (or a test's) from running side by side.
        assert "container_name" not in service, name
        assert service["restart"] == "unless-stopped", name


def test_each_replica_runs_the_api_as_bikecount_up_does_under_a_name_of_its_own(
    fleet: dict[str, Any],
) -> None:
    command = ["python", "-m", "uvicorn"]
    command += uvicorn_args(REGMODEL_APP, host=COMPOSE_BIND_HOST, port=COMPOSE_PORTS[REGMODEL])
    instances = set()
    for name in REPLICAS:
        replica = fleet[name]
        assert replica["command"] == command  # the image's code: no --reload, no mounted source
        environment = replica["environment"]
        assert environment["BIKECOUNT_API_INSTANCE"] == name
        instances.add(environment["BIKECOUNT_API_INSTANCE"])
        tracking = f"http://{MLFLOW_SERVICE}:{COMPOSE_PORTS[MLFLOW]}"
        assert {key: environment[key] for key in api_env(tracking)} == api_env(tracking)
        assert environment["BIKECOUNT_API_KEY"] is None  # passed through only when set
        mounted = {volume.split(":")[1]: volume for volume in replica["volumes"]}
        assert COMPOSE_PACKAGE_DIR not in mounted
        assert mounted["/app/data"] == "./data:/app/data:ro"
        assert replica["depends_on"] == {MLFLOW_SERVICE: {"condition": "service_healthy"}}
        assert "http://localhost:8000/health" in replica["healthcheck"]["test"][-1]
    assert len(instances) == len(REPLICAS)


def test_mlflow_stores_on_the_fleets_postgresql(fleet: dict[str, Any]) -> None:
    mlflow, database = fleet[MLFLOW_SERVICE], fleet["fleet-db"]["environment"]
    backend = "postgresql://{user}:${{FLEET_DB_PASSWORD:-mlflow}}@fleet-db:5432/{db}".format(
        user=database["POSTGRES_USER"], db=database["POSTGRES_DB"]
    )
    assert database["POSTGRES_PASSWORD"] == "${FLEET_DB_PASSWORD:-mlflow}"
    expected = mlflow_server_args(
        host=COMPOSE_BIND_HOST,
        port=COMPOSE_PORTS[MLFLOW],
        backend_store_uri=backend,
        default_artifact_root=COMPOSE_ARTIFACT_ROOT,
        artifacts_destination=COMPOSE_ARTIFACTS,
        hosts_allowed=allowed_hosts(COMPOSE_BIND_HOST, [MLFLOW_SERVICE]),
    )
    assert mlflow["command"] == ["python", "-m", "mlflow", *expected]
    assert {key: mlflow["environment"][key] for key in MLFLOW_ENV} == MLFLOW_ENV
    # One artifact store for every replica: a volume behind MLflow's proxy.
    assert f"fleet-artifacts:{COMPOSE_ARTIFACTS}" in mlflow["volumes"]
    assert mlflow["depends_on"] == {"fleet-db": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_fleet_publishes_the_stacks_ports_on_loopback(fleet: dict[str, Any], name: str) -> None:
    setting, port = PUBLISHED[name]
    (published,) = fleet[name]["ports"]
    assert f"${{{setting}:-{port}}}" in published
    inside = 8000 if name == "fleet-balancer" else port
    assert interpolate(published) == f"127.0.0.1:{port}:{inside}"


def test_the_balancer_sends_to_every_replica_and_checks_its_health(
    fleet: dict[str, Any], haproxy: dict[str, list[str]]
) -> None:
    backend = haproxy["backend regmodel"]
    servers = [line.split()[1:3] for line in backend if line.startswith("server ")]
    assert servers == [[name, f"{name}:{COMPOSE_PORTS[REGMODEL]}"] for name in REPLICAS]
    assert "option httpchk GET /health" in backend
    assert "http-check expect status 200" in backend
    assert any(line.startswith("default-server check ") for line in backend)
    assert "bind :8000" in haproxy["frontend api"]
    mounted = fleet["fleet-balancer"]["volumes"]
    assert mounted == ["./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert set(fleet["fleet-balancer"]["depends_on"]) == set(REPLICAS)


def test_the_balancer_replays_only_reads_and_predictions(haproxy: dict[str, list[str]]) -> None:
    defaults, frontend = haproxy["defaults"], haproxy["frontend api"]
    # A replica killed mid-request: its /predict is replayed on another (empty-response).
    assert "retry-on conn-failure empty-response 503" in defaults
    assert "option redispatch 1" in defaults
    assert "option http-buffer-request" in defaults  # no replay without the whole request
    replayable = [line.split()[2:] for line in frontend if line.startswith("acl replayable ")]
    assert replayable == [["method", "GET", "HEAD"], ["path", "/predict"]]
    # Anything else (POST /train, DELETE /train/{id}) is retried only when it was never sent.
    assert "http-request disable-l7-retry unless replayable" in frontend


def test_prometheus_scrapes_every_replica_on_its_own(fleet: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    # One target per replica, never the balancer's address: `instance` tells them apart.
    assert jobs["regmodel"] == [f"{name}:{COMPOSE_PORTS[REGMODEL]}" for name in REPLICAS]
    assert jobs["haproxy"] == ["fleet-balancer:8404"]
    assert config["rule_files"] == ["alerts.yml"]
    command = fleet["fleet-prometheus"]["command"]
    assert f"--config.file=/etc/prometheus/{PROMETHEUS_CONFIG.name}" in command
    assert fleet["fleet-prometheus"]["volumes"] == ["./deploy/prometheus:/etc/prometheus:ro"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: make system-deps")
def test_promtool_accepts_the_fleets_prometheus_config() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", PROMETHEUS_CONFIG.name],
        cwd=PROMETHEUS_CONFIG.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
