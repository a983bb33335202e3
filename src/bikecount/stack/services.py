"""How each service of the stack is started: the one place that says it.

``bikecount up`` runs these command lines as local processes; ``docker-compose.yaml`` runs the same
ones in containers (only paths, bind address and the MLflow host name differ), and
``tests/unit/test_compose.py`` checks that the two agree. Change a flag here, then in the compose
file, and the test tells you if you forgot one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

import bikecount
from bikecount.config import Settings

MLFLOW = "mlflow"
REGMODEL = "regmodel"
CLASSMODEL = "classmodel"
PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
AIRFLOW = "airflow"

REGMODEL_APP = "bikecount.api.regmodel:create_app"
CLASSMODEL_APP = "bikecount.api.classmodel:create_app"
HEALTH_PATH = "/health"

# Addresses that mean "every interface": clients must connect through loopback instead.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
# Clients on a private network reach a server bound to every interface by its private IP.
PRIVATE_NETWORK_HOSTS = ("10.*", "192.168.*", "172.1[6-9].*", "172.2[0-9].*", "172.3[01].*")

# Inside the containers (docker-compose.yaml): ports, mount points and names.
COMPOSE_BIND_HOST = "0.0.0.0"
COMPOSE_MLFLOW_HOST = "mlflow"
COMPOSE_PORTS = {MLFLOW: 5000, REGMODEL: 8000, CLASSMODEL: 8080}
COMPOSE_MLRUNS = "/mlflow/mlruns"
COMPOSE_ARTIFACTS = "/mlflow/artifacts"
COMPOSE_ARTIFACT_ROOT = "mlflow-artifacts:/"
COMPOSE_PACKAGE_DIR = "/app/src/bikecount"

PROMETHEUS_HEALTH_PATH = "/-/healthy"
PROMETHEUS_INSTALL_HINT = (
    "apt-get install prometheus on Debian/Ubuntu, or a release from https://prometheus.io/download/"
)
# Local scrapes are cheap: a short interval shows traffic in Grafana-like queries at once.
LOCAL_SCRAPE_INTERVAL = "5s"

ALERTMANAGER_HEALTH_PATH = "/-/healthy"
# Debian's package names the program prometheus-alertmanager; upstream releases, alertmanager.
ALERTMANAGER_PROGRAMS = ("alertmanager", "prometheus-alertmanager")
ALERTMANAGER_INSTALL_HINT = (
    "apt-get install prometheus-alertmanager on Debian/Ubuntu, or a release from "
    "https://prometheus.io/download/"
)

AIRFLOW_HEALTH_PATH = "/api/v2/monitor/health"
AIRFLOW_INSTALL_HINT = "pip install -e '.[airflow]' (`make install` does)"

# MLflow's job runner (four more processes, GenAI features) is of no use to bikecount.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the stack: its command line, environment, port and health check.

    ``port_option`` and ``usual_owner`` make the message when the port is taken actionable.
    """

    name: str
    command: tuple[str, ...]
    host: str
    port: int
    port_option: str
    usual_owner: str
    env: Mapping[str, str] = field(default_factory=dict)
    health_path: str = HEALTH_PATH

    @property
    def url(self) -> str:
        """The base URL a client on this machine uses."""
        host = client_host(self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}{self.health_path}"


def client_host(bind_host: str) -> str:
    """The address a local client connects to for a server bound to ``bind_host``."""
    return "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host


def allowed_hosts(bind_host: str, extra_names: Sequence[str] = ()) -> list[str]:
    """The Host headers the MLflow server accepts (MLflow 3 rejects any other, with 403).

    Loopback names and ``extra_names`` are accepted on any port (a published port may differ
    from the one inside a container); a specific bind address is accepted as itself, and a
    wildcard bind also accepts private-network addresses, as MLflow's own default does.
    """
    names = [*LOOPBACK_NAMES, *extra_names]
    if bind_host not in WILDCARD_HOSTS and bind_host not in names:
        names.append(bind_host)
    hosts = [pattern for name in names for pattern in (name, f"{name}:*")]
    if bind_host in WILDCARD_HOSTS:
        hosts.extend(PRIVATE_NETWORK_HOSTS)
    return hosts


def mlflow_server_args(
    *,
    host: str,
    port: int,
    backend_store_uri: str,
    default_artifact_root: str,
    artifacts_destination: str,
    hosts_allowed: Sequence[str],
) -> list[str]:
    """Arguments of ``python -m mlflow``: the tracking server, one worker.

    ``default_artifact_root`` is where experiments created through the server keep artifacts;
    ``artifacts_destination`` is the folder behind the server's artifact proxy
    (``mlflow-artifacts:/``).
    """
    return [
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--default-artifact-root",
        default_artifact_root,
        "--artifacts-destination",
        artifacts_destination,
        "--workers",
        "1",
        "--allowed-hosts",
        ",".join(hosts_allowed),
    ]


def uvicorn_args(app: str, *, host: str, port: int, reload_dir: str | None = None) -> list[str]:
    """Arguments of ``python -m uvicorn`` for an app factory; ``reload_dir`` turns on hot reload."""
    args = ["--factory", app, "--host", host, "--port", str(port)]
    if reload_dir is not None:
        args += ["--reload", "--reload-dir", reload_dir]
    return args


def api_env(tracking_uri: str) -> dict[str, str]:
    """Environment of an API process: the tracking server to use.

    Both names are set: ours wins over anything in ``.env``, MLflow's is the seed's spelling and
    what MLflow itself reads.
    """
    # One OpenMP thread: requests already run in parallel, and gradient boosting entering a
    # parallel region per tree made one-record predictions wait on busy cores. It must be set
    # before the OpenMP runtime loads, hence in the environment.
    return {
        "BIKECOUNT_MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "OMP_NUM_THREADS": "1",
    }


def package_dir() -> str:
    """The folder of the bikecount package (``src/bikecount`` in an editable install)."""
    return str(Path(bikecount.__file__).resolve().parent)


def python_module(python: str, module: str, args: Sequence[str]) -> tuple[str, ...]:
    return (python, "-m", module, *args)


def mlflow_service(settings: Settings, host: str, port: int) -> ServiceSpec:
    """The local MLflow server: SQLite under ``mlruns_dir``, artifacts in ``artifacts_dir``.

    Experiments it creates keep their artifacts at the folder's ``file://`` URI, as those the
    CLI creates without a server do: the CLI, the APIs and the server share this machine's disk,
    and a model trained through the stack stays loadable once the stack is stopped (a proxied
    ``mlflow-artifacts:/`` root would need the server running).
    """
    backend = f"sqlite:///{(settings.mlruns_dir / 'mlflow.db').resolve()}"
    args = mlflow_server_args(
        host=host,
        port=port,
        backend_store_uri=backend,
        default_artifact_root=settings.artifact_root("dev"),
        artifacts_destination=str(settings.artifacts_dir.resolve()),
        hosts_allowed=allowed_hosts(host),
    )
    return ServiceSpec(
        name=MLFLOW,
        command=python_module(sys.executable, "mlflow", args),
        host=host,
        port=port,
        port_option="--mlflow-port",
        usual_owner="another MLflow?",
        env=MLFLOW_ENV,
    )


def api_service(
    name: str, app: str, *, host: str, port: int, tracking_uri: str, reload: bool
) -> ServiceSpec:
    """A bikecount API (RegModel or ClassModel) served by uvicorn from its app factory."""
    args = uvicorn_args(app, host=host, port=port, reload_dir=package_dir() if reload else None)
    option = "--api-port" if name == REGMODEL else "--classmodel-port"
    return ServiceSpec(
        name=name,
        command=python_module(sys.executable, "uvicorn", args),
        host=host,
        port=port,
        port_option=option,
        usual_owner="another bikecount API?",
        env=api_env(tracking_uri),
    )


def prometheus_dir(settings: Settings) -> Path:
    """Where the local Prometheus keeps its generated config and its time series."""
    return settings.logs_dir / PROMETHEUS


def alert_rules_file() -> Path | None:
    """``deploy/prometheus/alerts.yml`` of a source checkout (absent from an installed wheel)."""
    path = Path(package_dir()).parents[1] / "deploy" / "prometheus" / "alerts.yml"
    return path if path.is_file() else None


def prometheus_config(
    targets: Mapping[str, str],
    rules_file: Path | None = None,
    scrape_interval: str = LOCAL_SCRAPE_INTERVAL,
    alertmanagers: Sequence[str] = (),
) -> dict[str, object]:
    """A Prometheus config scraping ``targets`` (job name -> ``host:port``) with our rules,
    sending what fires to ``alertmanagers`` (``host:port``).

    The jobs carry the service names (``regmodel``, ``classmodel``), as in
    ``deploy/prometheus/prometheus.yml``, so the alert rules and dashboards apply unchanged.
    """
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(rules_file)] if rules_file else [],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [*alertmanagers]}]}]
        }
    return config


def scrape_target(spec: ServiceSpec) -> str:
    """``host:port`` that a local Prometheus scrapes for a service."""
    host = client_host(spec.host)
    return f"[{host}]:{spec.port}" if ":" in host else f"{host}:{spec.port}"


def prometheus_service(settings: Settings, host: str, port: int) -> ServiceSpec:
    """Prometheus from PATH, with the config :func:`write_prometheus_config` writes."""
    folder = prometheus_dir(settings).resolve()
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    command = (
        "prometheus",
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={listen}",
    )
    return ServiceSpec(
        name=PROMETHEUS,
        command=command,
        host=host,
        port=port,
        port_option="--prometheus-port",
        usual_owner="another Prometheus?",
        health_path=PROMETHEUS_HEALTH_PATH,
    )


def alertmanager_program() -> str | None:
    """The Alertmanager program on PATH (either of its names), or None."""
    return next((name for name in ALERTMANAGER_PROGRAMS if shutil.which(name)), None)


def alertmanager_dir(settings: Settings) -> Path:
    """Where the local Alertmanager keeps its generated config and its state."""
    return settings.logs_dir / ALERTMANAGER


def alertmanager_config_file(settings: Settings) -> Path:
    return alertmanager_dir(settings) / "alertmanager.yml"


def alertmanager_service(settings: Settings, host: str, port: int) -> ServiceSpec:
    """Alertmanager from PATH, with the config ``bikecount.monitoring.alerting`` writes.

    One instance, so no cluster: its gossip port (9094 on every interface) stays closed.
    """
    folder = alertmanager_dir(settings).resolve()
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    command = (
        alertmanager_program() or ALERTMANAGER_PROGRAMS[0],
        f"--config.file={folder / 'alertmanager.yml'}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",
    )
    return ServiceSpec(
        name=ALERTMANAGER,
        command=command,
        host=host,
        port=port,
        port_option="--alertmanager-port",
        usual_owner="another Alertmanager?",
        health_path=ALERTMANAGER_HEALTH_PATH,
    )


def write_prometheus_config(settings: Settings, services: Sequence[ServiceSpec]) -> Path:
    """Write the local Prometheus config: scrape the stack's APIs, with the alert rules, and
    send alerts to the stack's Alertmanager when it has one."""
    targets = {s.name: scrape_target(s) for s in services if s.name in (REGMODEL, CLASSMODEL)}
    alertmanagers = [scrape_target(s) for s in services if s.name == ALERTMANAGER]
    path = prometheus_dir(settings) / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = prometheus_config(targets, alert_rules_file(), alertmanagers=alertmanagers)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dags_folder() -> Path | None:
    """``dags/`` of a source checkout (absent from an installed wheel)."""
    path = Path(package_dir()).parents[1] / "dags"
    return path if path.is_dir() else None


def absolute_database_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (other databases are left as they are).

    Airflow runs tasks in processes of its own: a path relative to where the stack started
    must not depend on where they run.
    """
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return url
    database = str(Path(parsed.database).resolve())
    return parsed.set(database=database).render_as_string(hide_password=False)


def airflow_service(
    settings: Settings, host: str, port: int, *, api_url: str, tracking_uri: str
) -> ServiceSpec:
    """``airflow standalone``: its API server and UI, scheduler, DAG processor and triggerer.

    The metadata database is SQLite in ``airflow_home``; the DAGs are the checkout's ``dags/``
    and their tasks call the stack's API and MLflow server. DAGs start paused, as Airflow's
    default has it: unpausing one is a decision (it starts the latest scheduled run at once).
    """
    url = f"http://{client_host(host)}:{port}"
    env = {
        "AIRFLOW_HOME": str(settings.airflow_home.resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # A local stack for one user: no login page.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # standalone starts its components as `airflow ...`: this environment's comes first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **api_env(tracking_uri),
        "BIKECOUNT_PIPELINE_API_URL": api_url,
        "BIKECOUNT_PIPELINE_DB_URL": absolute_database_url(settings.pipeline_db_url),
        "BIKECOUNT_DATA_DIR": str(settings.data_dir.resolve()),
        "BIKECOUNT_REPORTS_DIR": str(settings.reports_dir.resolve()),
    }
    return ServiceSpec(
        name=AIRFLOW,
        command=python_module(sys.executable, "airflow", ["standalone"]),
        host=host,
        port=port,
        port_option="--airflow-port",
        usual_owner="another Airflow?",
        env=env,
        health_path=AIRFLOW_HEALTH_PATH,
    )


def build_services(
    settings: Settings,
    *,
    host: str,
    mlflow_port: int,
    api_port: int,
    classmodel_port: int,
    legacy: bool = False,
    reload: bool = False,
    monitoring: bool = False,
    prometheus_port: int = 9090,
    airflow: bool = False,
    airflow_port: int = 8081,
    alertmanager: bool = False,
    alertmanager_port: int = 9093,
) -> list[ServiceSpec]:
    """The local stack, in start order: MLflow, the RegModel API, with ``legacy`` the
    ClassModel API, with ``monitoring`` Prometheus scraping them (and with ``alertmanager``
    Alertmanager delivering its alerts), and with ``airflow`` Airflow running the DAGs against
    them. The APIs talk to the MLflow server started here."""
    mlflow = mlflow_service(settings, host, mlflow_port)
    common = {"host": host, "tracking_uri": mlflow.url, "reload": reload}
    regmodel = api_service(REGMODEL, REGMODEL_APP, port=api_port, **common)
    services = [mlflow, regmodel]
    if legacy:
        services.append(api_service(CLASSMODEL, CLASSMODEL_APP, port=classmodel_port, **common))
    if monitoring and alertmanager:
        services.append(alertmanager_service(settings, host, alertmanager_port))
    if monitoring:
        services.append(prometheus_service(settings, host, prometheus_port))
    if airflow:
        services.append(
            airflow_service(
                settings, host, airflow_port, api_url=regmodel.url, tracking_uri=mlflow.url
            )
        )
    return services


def compose_commands() -> dict[str, list[str]]:
    """The ``command`` each service of ``docker-compose.yaml`` must have, by compose service.

    Same arguments as :func:`build_services`, with the containers' paths, every interface bound
    (ports are published by Docker) and the MLflow server reachable by its service name.
    """
    mlflow = mlflow_server_args(
        host=COMPOSE_BIND_HOST,
        port=COMPOSE_PORTS[MLFLOW],
        backend_store_uri=f"sqlite:///{COMPOSE_MLRUNS}/mlflow.db",
        # Containers share no paths with each other: artifacts go through the server's proxy.
        default_artifact_root=COMPOSE_ARTIFACT_ROOT,
        artifacts_destination=COMPOSE_ARTIFACTS,
        hosts_allowed=allowed_hosts(COMPOSE_BIND_HOST, [COMPOSE_MLFLOW_HOST]),
    )
    apis = {
        "regmodel-backend": (REGMODEL, REGMODEL_APP),
        "classmodel-backend": (CLASSMODEL, CLASSMODEL_APP),
    }
    commands = {"mlflow": list(python_module("python", "mlflow", mlflow))}
    for compose_name, (name, app) in apis.items():
        args = uvicorn_args(
            app, host=COMPOSE_BIND_HOST, port=COMPOSE_PORTS[name], reload_dir=COMPOSE_PACKAGE_DIR
        )
        commands[compose_name] = list(python_module("python", "uvicorn", args))
    return commands


def compose_api_env() -> dict[str, str]:
    """The tracking-server environment every API container must have."""
    return api_env(f"http://{COMPOSE_MLFLOW_HOST}:{COMPOSE_PORTS[MLFLOW]}")
