"""docker-compose.yaml and deploy/Dockerfile, checked without a Docker engine: their structure,
and that the containers run what ``bikecount up`` runs (``bikecount.stack.services``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from docker_engine import compose_command
from mlflow.server.security_utils import is_allowed_host_header
from packaging.requirements import Requirement

from bikecount.config import Settings
from bikecount.stack.commands import MLFLOW_ENV
from bikecount.stack.compose import (
    COMPOSE_PACKAGE_DIR,
    COMPOSE_PORTS,
    compose_api_env,
    compose_commands,
    compose_dashboard_env,
)
from bikecount.stack.services import (
    CLASSMODEL,
    DASHBOARD,
    MLFLOW,
    REGMODEL,
    StackOptions,
    build_services,
)
from helpers import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
API_SERVICES = {"regmodel-backend": REGMODEL, "classmodel-backend": CLASSMODEL}
MONITORING_SERVICES = {"prometheus": 9090, "grafana": 3000, "alertmanager": 9093}
# Ports published for each service: (its setting, its default on the host, its port inside).
PUBLISHED = {
    "mlflow": ("BIKECOUNT_MLFLOW_PORT", 5000, 5000),
    "regmodel-backend": ("BIKECOUNT_API_PORT", 8000, 8000),
    "classmodel-backend": ("BIKECOUNT_CLASSMODEL_PORT", 8080, 8080),
    "dashboard": ("BIKECOUNT_DASHBOARD_PORT", 8501, 8501),
    "prometheus": ("BIKECOUNT_PROMETHEUS_PORT", 9090, 9090),
    "alertmanager": ("BIKECOUNT_ALERTMANAGER_PORT", 9093, 9093),
    "grafana": ("BIKECOUNT_GRAFANA_PORT", 3000, 3000),
    "airflow-apiserver": ("BIKECOUNT_AIRFLOW_PORT", 8081, 8080),
}
ONE_SHOT_SERVICES = {"data", "alertmanager-config"}
ORCHESTRATION_SERVICES = {
    "airflow-db",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
}
OPTIONAL_SERVICES = {*MONITORING_SERVICES, *ORCHESTRATION_SERVICES, *ONE_SHOT_SERVICES}
# The `fleet` profile's services, checked in test_compose_fleet.py.
OPTIONAL_SERVICES |= {"fleet-db", "fleet-mlflow", "fleet-balancer", "fleet-prometheus"}
OPTIONAL_SERVICES |= {"regmodel-1", "regmodel-2"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def option_value(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` with the variables in ``env`` (none set by default)."""

    def substitute(match: re.Match[str]) -> str:
        return (env or {}).get(match.group(1)) or match.group(2)

    return re.sub(r"\$\{(\w+):-([^}]*)\}", substitute, value)


def mounts(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """Target -> "source[:mode]" of a service's bind mounts."""
    result = {}
    for volume in service["volumes"]:
        source, target, *mode = interpolate(volume, env).split(":")
        result[target] = ":".join([source, *mode])
    return result


def test_the_seed_services(services: dict[str, Any]) -> None:
    services = {k: v for k, v in services.items() if k not in OPTIONAL_SERVICES}
    assert set(services) == {"mlflow", "regmodel-backend", "classmodel-backend", DASHBOARD}
    services = {k: v for k, v in services.items() if k != DASHBOARD}
    names = {name: service["container_name"] for name, service in services.items()}
    assert names == {
        "mlflow": "mlflow-server",
        "regmodel-backend": "regmodel-api",
        "classmodel-backend": "classmodel-api",
    }
    ports = {name: interpolate(service["ports"][0]) for name, service in services.items()}
    assert ports == {
        "mlflow": "127.0.0.1:5000:5000",
        "regmodel-backend": "127.0.0.1:8000:8000",
        "classmodel-backend": "127.0.0.1:8080:8080",
    }


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_ports_are_published_on_loopback_at_the_stack_settings(
    services: dict[str, Any], name: str
) -> None:
    setting, default, inside = PUBLISHED[name]
    (port,) = services[name]["ports"]
    assert interpolate(port) == f"127.0.0.1:{default}:{inside}"
    chosen = interpolate(port, {"BIKECOUNT_HOST": "0.0.0.0", setting: "18000"})
    assert chosen == f"0.0.0.0:18000:{inside}"
    # The settings `bikecount up` reads (the monitoring ports are compose's own).
    field = setting.removeprefix("BIKECOUNT_").lower()
    if field in Settings.model_fields:
        assert Settings.model_fields[field].default == default


def test_only_the_classmodel_is_behind_the_legacy_profile(services: dict[str, Any]) -> None:
    assert services["classmodel-backend"]["profiles"] == ["legacy"]
    assert "profiles" not in services["mlflow"]
    assert "profiles" not in services["regmodel-backend"]


def test_mlflow_image_matches_the_pinned_client(services: dict[str, Any]) -> None:
    # Client and server of one version: the registry and artifact APIs change between releases.
    image = services["mlflow"]["image"]
    assert image.startswith("ghcr.io/mlflow/mlflow:")
    assert image.split(":")[1].removeprefix("v").removesuffix("-full") == mlflow.__version__


def test_mlflow_volumes(services: dict[str, Any]) -> None:
    volumes = mounts(services["mlflow"])
    assert volumes["/mlflow/mlruns"] == "./mlruns_dev"
    assert volumes["/mlflow/artifacts"] == "./mlflow_artifacts"
    assert volumes["/mlflow/gcp.json"].endswith(":ro")


@pytest.mark.parametrize("name", API_SERVICES)
def test_api_volumes(services: dict[str, Any], name: str) -> None:
    volumes = mounts(services[name])
    assert volumes[COMPOSE_PACKAGE_DIR] == "./src/bikecount"
    assert volumes["/app/data"] == "./data:ro"
    assert volumes["/app/gcp.json"].endswith(":ro")


@pytest.mark.parametrize("name", ["mlflow", *API_SERVICES])
def test_gcp_credentials_are_optional(services: dict[str, Any], name: str) -> None:
    # Without the variable nothing named gcp.json must be needed (Docker would make a folder).
    target = next(t for t in mounts(services[name]) if t.endswith("/gcp.json"))
    assert mounts(services[name])[target] == "/dev/null:ro"
    chosen = mounts(services[name], {"GCP_CREDENTIALS_FILE": "./gcp.json"})
    assert chosen[target] == "./gcp.json:ro"
    assert services[name]["environment"]["GOOGLE_APPLICATION_CREDENTIALS"] == target


def test_mlflow_runs_what_bikecount_up_runs(services: dict[str, Any]) -> None:
    assert services["mlflow"]["command"] == compose_commands()["mlflow"]
    environment = services["mlflow"]["environment"]
    assert {key: environment[key] for key in MLFLOW_ENV} == MLFLOW_ENV


@pytest.mark.parametrize("name", API_SERVICES)
def test_apis_run_what_bikecount_up_runs(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["command"] == compose_commands()[name]
    environment = service["environment"]
    assert {key: environment[key] for key in compose_api_env()} == compose_api_env()
    assert interpolate(environment["BIKECOUNT_ENV"]) == "dev"
    # Passed through only when set: an empty key or bucket is not "none".
    assert environment["BIKECOUNT_API_KEY"] is None
    assert environment["BIKECOUNT_GCS_BUCKET"] is None


def test_mlflow_accepts_the_hosts_that_call_it(services: dict[str, Any]) -> None:
    hosts = option_value(services["mlflow"]["command"], "--allowed-hosts").split(",")
    for host in ("mlflow", "mlflow:5000", "localhost:5000", "127.0.0.1:5000"):
        assert is_allowed_host_header(hosts, host), host
    assert not is_allowed_host_header(hosts, "attacker.example:5000")


@pytest.mark.parametrize("name", API_SERVICES)
def test_apis_wait_for_a_healthy_mlflow(services: dict[str, Any], name: str) -> None:
    assert services[name]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    assert services[name]["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}


@pytest.mark.parametrize(("name", "port"), [("mlflow", 5000), *((n, None) for n in API_SERVICES)])
def test_healthchecks_ask_the_health_endpoint(
    services: dict[str, Any], name: str, port: int | None
) -> None:
    port = port or int(option_value(services[name]["command"], "--port"))
    check = services[name]["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert f"http://localhost:{port}/health" in check[-1]


def test_container_and_local_commands_differ_only_in_place(
    services: dict[str, Any], tmp_path: Path
) -> None:
    # Same module, same flags in the same order, same app and port; only the interpreter, the
    # bind address, paths and the allowed host names may differ.
    settings = Settings(_env_file=None, mlruns_dir=tmp_path, artifacts_dir=tmp_path)
    local = build_services(settings, StackOptions(legacy=True, reload=True, dashboard=False))
    by_compose_name = {"mlflow": MLFLOW, **API_SERVICES}
    for compose_name, name in by_compose_name.items():
        ours = list(next(spec for spec in local if spec.name == name).command)
        theirs = services[compose_name]["command"]
        assert ours[0] == sys.executable and theirs[0] == "python"
        assert ours[1:3] == theirs[1:3]  # -m module
        assert [t for t in ours if t.startswith("-")] == [t for t in theirs if t.startswith("-")]
        assert option_value(ours, "--port") == option_value(theirs, "--port")
        if "--factory" in ours:
            assert option_value(ours, "--factory") == option_value(theirs, "--factory")


def test_dockerfile_is_slim_cached_cpu_and_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "download.pytorch.org/whl/cpu" in text
    assert "uv pip install" in text
    # Dependencies before code: a code change must not reinstall them.
    copy_pyproject = next(i for i, line in enumerate(instructions) if "COPY pyproject" in line)
    copy_src = next(i for i, line in enumerate(instructions) if line.startswith("COPY src"))
    assert copy_pyproject < copy_src
    # bikecount is installed (the `bikecount` command, package metadata), editable so that the
    # mounted code is the code that runs.
    assert "PYTHONPATH" not in text
    install = next(i for i, line in enumerate(instructions) if "pip install --no-deps -e ." in line)
    assert install > copy_src
    # Commands run as the owner of the mounted data, never as root by default.
    assert 'ENTRYPOINT ["run-as-owner", "/app/data", "--"]' in text
    assert "useradd --create-home --uid 1000" in text


def test_dockerfile_builds_without_buildkit_or_another_registry() -> None:
    # The legacy builder (docker-compose v1) has no `RUN --mount` and no `# syntax` frontend;
    # the only image it pulls is the base.
    text = DOCKERFILE.read_text()
    assert "--mount" not in text and "# syntax" not in text
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE)
    pulled = set(re.findall(r"^(?:FROM\s+|COPY --from=)(\S+)", text, re.MULTILINE)) - set(stages)
    assert pulled == {"python:3.11-slim-bookworm"}


def test_the_dependency_layer_is_keyed_on_the_requirements_only(tmp_path: Path) -> None:
    # What deploy/requirements.py lists is what pyproject.toml asks for, extras included.
    script = REPO / "deploy" / "requirements.py"
    pyproject = (REPO / "pyproject.toml").read_bytes()
    plain = subprocess.run(
        [sys.executable, str(script)], input=pyproject, capture_output=True, check=True
    ).stdout.decode()
    airflow = subprocess.run(
        [sys.executable, str(script)], input=pyproject, capture_output=True, check=True,
        env={**os.environ, "EXTRAS": "airflow"},
    ).stdout.decode()  # fmt: skip
    project = tomllib.loads(pyproject.decode())["project"]
    assert plain.splitlines() == project["dependencies"]
    extra = project["optional-dependencies"]["airflow"]
    assert airflow.splitlines() == project["dependencies"] + extra
    assert "!deploy/requirements.py" in (REPO / ".dockerignore").read_text().splitlines()


def test_the_entrypoint_is_in_the_build_context_and_executable() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert "!deploy/run-as-owner.sh" in rules and "!README.md" in rules
    assert os.access(REPO / "deploy" / "run-as-owner.sh", os.X_OK)


def test_the_data_service_prepares_data_in_a_writable_mount(services: dict[str, Any]) -> None:
    data = services["data"]
    assert data["profiles"] == ["data"]  # `docker compose run` only, never with `up`
    assert data["command"] == ["bikecount", "data", "prepare"]
    assert mounts(data)["/app/data"] == "./data"
    assert data["image"] == services["regmodel-backend"]["image"]


def test_mlflow_writes_as_the_owner_of_its_folders(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    assert mounts(mlflow)["/usr/local/bin/run-as-owner"] == "./deploy/run-as-owner.sh:ro"
    assert mlflow["entrypoint"] == [
        "/usr/local/bin/run-as-owner",
        "/mlflow/mlruns",
        "/mlflow/artifacts",
        "--",
    ]


def test_alertmanager_reads_the_config_written_from_the_settings(
    services: dict[str, Any],
) -> None:
    writer, alertmanager = services["alertmanager-config"], services["alertmanager"]
    assert writer["command"][:3] == ["bikecount", "alerts", "config"]
    written = option_value(writer["command"], "--output")
    read = next(arg for arg in alertmanager["command"] if arg.startswith("--config.file="))
    assert Path(written).name == Path(read.split("=", 1)[1]).name
    assert alertmanager["depends_on"] == {
        "alertmanager-config": {"condition": "service_completed_successfully"}
    }
    for name in ("WEBHOOK", "SLACK_WEBHOOK", "DISCORD_WEBHOOK"):
        key = f"BIKECOUNT_ALERT_{name}_URL"
        assert writer["environment"][key] is None  # passed through only when set
        assert key.removeprefix("BIKECOUNT_").lower() in Settings.model_fields
    assert "--cluster.listen-address=" in alertmanager["command"]


def test_dockerfile_torch_satisfies_the_project() -> None:
    pinned = re.search(r"torch==([\w.]+)", DOCKERFILE.read_text())
    assert pinned is not None
    pyproject = (REPO / "pyproject.toml").read_text()
    spec = next(
        Requirement(line.strip().strip('",'))
        for line in pyproject.splitlines()
        if line.strip().startswith('"torch')
    )
    assert spec.specifier.contains(pinned.group(1))


def test_build_context_keeps_secrets_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # an allow-list: only what is re-included below is sent
    assert {"!pyproject.toml", "!src/"} <= set(rules)
    assert not any(rule.startswith("!") and ("gcp" in rule or ".env" in rule) for rule in rules)


@pytest.mark.skipif(compose_command() is None, reason="no docker compose installed here")
@pytest.mark.parametrize("credentials", [None, "./gcp.json"], ids=["no-gcp", "gcp"])
def test_docker_compose_accepts_the_file(credentials: str | None) -> None:
    # `config` needs no engine: it parses, interpolates and validates against the spec.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIKECOUNT_", "GCP_"))}
    if credentials:
        env["GCP_CREDENTIALS_FILE"] = credentials
    result = subprocess.run(
        [*compose_command(), "--profile", "legacy", "config"],  # type: ignore[misc]
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    # Some compose versions list every profile's services in `config`: leave the others aside.
    resolved = {k: v for k, v in resolved.items() if k not in OPTIONAL_SERVICES}
    assert set(resolved) == {"mlflow", "regmodel-backend", "classmodel-backend", DASHBOARD}
    source = "gcp.json" if credentials else "/dev/null"
    for name, service in resolved.items():
        if name == DASHBOARD:
            continue  # it reads no bucket
        volume = next(v for v in service["volumes"] if "gcp.json:" in str(v))
        text = volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}"
        assert text.split(":")[0].endswith(source)


@pytest.mark.parametrize("name", MONITORING_SERVICES)
def test_monitoring_services_are_behind_their_profile(services: dict[str, Any], name: str) -> None:
    port = MONITORING_SERVICES[name]
    assert services[name]["profiles"] == ["monitoring"]
    assert interpolate(services[name]["ports"][0]) == f"127.0.0.1:{port}:{port}"


def test_monitoring_mounts_the_deploy_files(services: dict[str, Any]) -> None:
    prometheus, grafana = mounts(services["prometheus"]), mounts(services["grafana"])
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == [f"alertmanager:{MONITORING_SERVICES['alertmanager']}"]
    assert prometheus == {"/etc/prometheus": "./deploy/prometheus:ro"}
    assert grafana == {
        "/etc/grafana/provisioning": "./deploy/grafana/provisioning:ro",
        "/var/lib/grafana/dashboards": "./deploy/grafana/dashboards:ro",
    }
    for source in [*prometheus.values(), *grafana.values()]:
        assert (REPO / source.split(":")[0]).is_dir()
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_prometheus_scrapes_the_compose_apis() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for target in job["static_configs"][0]["targets"]
    }
    for compose_name, name in API_SERVICES.items():
        assert targets[name] == f"{compose_name}:{COMPOSE_PORTS[name]}"


@pytest.mark.skipif(compose_command() is None, reason="no docker compose installed here")
def test_docker_compose_accepts_the_monitoring_profile() -> None:
    result = subprocess.run(
        [*compose_command(), "--profile", "monitoring", "config", "--services"],  # type: ignore[misc]
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert set(MONITORING_SERVICES) <= set(result.stdout.split())


@pytest.mark.parametrize("name", sorted(ORCHESTRATION_SERVICES))
def test_orchestration_services_are_behind_their_profile(
    services: dict[str, Any], name: str
) -> None:
    assert services[name]["profiles"] == ["orchestration"]


def test_airflow_serves_its_ui_on_8081_and_runs_the_repository_dags(
    services: dict[str, Any],
) -> None:
    assert interpolate(services["airflow-apiserver"]["ports"][0]) == "127.0.0.1:8081:8080"
    assert option_value(services["airflow-apiserver"]["command"], "--port") == "8080"
    for name in ORCHESTRATION_SERVICES - {"airflow-db"}:
        service = services[name]
        assert service["build"]["args"] == {"EXTRAS": "airflow"}
        folder = service["environment"]["AIRFLOW__CORE__DAGS_FOLDER"]
        assert mounts(service)[folder] == "./dags:ro"
        assert (REPO / "dags").is_dir()


def test_airflow_reaches_the_compose_api_mlflow_and_its_database(
    services: dict[str, Any],
) -> None:
    env = services["airflow-scheduler"]["environment"]
    assert env["BIKECOUNT_PIPELINE_API_URL"] == f"http://regmodel-backend:{COMPOSE_PORTS[REGMODEL]}"
    assert env["BIKECOUNT_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "@airflow-db:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@airflow-db:5432/bikecount" in env["BIKECOUNT_PIPELINE_DB_URL"]
    init_sql = mounts(services["airflow-db"])["/docker-entrypoint-initdb.d/init-bikecount.sql"]
    assert "CREATE DATABASE bikecount" in (REPO / init_sql.split(":")[0]).read_text()
    # Retraining writes its training file where the API reads it.
    assert mounts(services["airflow-scheduler"])["/app/data"] == "./data"
    assert mounts(services["regmodel-backend"])["/app/data"] == "./data:ro"
    depends = services["airflow-scheduler"]["depends_on"]
    assert depends["airflow-init"] == {"condition": "service_completed_successfully"}
    assert depends["regmodel-backend"] == {"condition": "service_healthy"}


def test_the_airflow_extra_pins_the_installed_airflow() -> None:
    import airflow

    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"apache-airflow=={airflow.__version__}"' in pyproject


def test_the_image_carries_the_dags() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert "!dags/" in rules
    assert "COPY dags/ ./dags/" in DOCKERFILE.read_text()


@pytest.mark.skipif(compose_command() is None, reason="no docker compose installed here")
def test_docker_compose_accepts_the_orchestration_profile() -> None:
    result = subprocess.run(
        [*compose_command(), "--profile", "orchestration", "config", "--services"],  # type: ignore[misc]
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert ORCHESTRATION_SERVICES | {"mlflow", "regmodel-backend"} <= set(result.stdout.split())


def test_the_dashboard_runs_what_bikecount_up_runs(
    services: dict[str, Any], tmp_path: Path
) -> None:
    service = services[DASHBOARD]
    assert "profiles" not in service  # the default profile
    port = COMPOSE_PORTS[DASHBOARD]
    assert interpolate(service["ports"][0]) == f"127.0.0.1:{port}:{port}"
    assert service["command"] == compose_commands()[DASHBOARD]
    environment = service["environment"]
    assert {key: environment[key] for key in compose_dashboard_env()} == compose_dashboard_env()
    assert environment["BIKECOUNT_API_KEY"] is None
    assert mounts(service)["/app/data"] == "./data:ro"
    assert "/_stcore/health" in service["healthcheck"]["test"][-1]
    settings = Settings(_env_file=None, mlruns_dir=tmp_path, artifacts_dir=tmp_path)
    local = build_services(settings, StackOptions(dashboard=True))
    ours = list(next(spec for spec in local if spec.name == DASHBOARD).command)
    theirs = service["command"]
    assert ours[1:4] == theirs[1:4]  # -m streamlit run
    assert Path(ours[4]).parts[-2:] == Path(theirs[4]).parts[-2:] == ("dashboard", "app.py")
    assert [t for t in ours if t.startswith("-")] == [t for t in theirs if t.startswith("-")]
    assert option_value(ours, "--server.port") == option_value(theirs, "--server.port")
