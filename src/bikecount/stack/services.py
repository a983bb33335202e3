"""How each service of the stack is started: the one place that says it.

Each service's command line and environment is built here from the programs' arguments
(:mod:`bikecount.stack.commands`) and its addresses (:mod:`bikecount.stack.addresses`).
``bikecount up`` runs these command lines as local processes; ``docker-compose.yaml`` runs the same
ones in containers (only paths, bind address and the MLflow host name differ: see
:mod:`bikecount.stack.compose`), and ``tests/unit/stack/test_compose.py`` checks that the two agree.
Change a flag here, then in the compose file, and the test tells you if you forgot one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bikecount
from bikecount.config import Settings
from bikecount.pipeline.store_engine import absolute_database_url
from bikecount.stack.addresses import allowed_hosts, client_host, host_port
from bikecount.stack.commands import (
    MLFLOW_ENV,
    api_env,
    dashboard_env,
    mlflow_server_args,
    python_module,
    streamlit_args,
    uvicorn_args,
)

MLFLOW = "mlflow"
REGMODEL = "regmodel"
CLASSMODEL = "classmodel"
PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
AIRFLOW = "airflow"
DASHBOARD = "dashboard"

REGMODEL_APP = "bikecount.api.regmodel:create_app"
CLASSMODEL_APP = "bikecount.api.classmodel:create_app"
HEALTH_PATH = "/health"

PROMETHEUS_HEALTH_PATH = "/-/healthy"
PROMETHEUS_INSTALL_HINT = (
    "apt-get install prometheus on Debian/Ubuntu, or a release from https://prometheus.io/download/"
)

ALERTMANAGER_HEALTH_PATH = "/-/healthy"
# Debian's package names the program prometheus-alertmanager; upstream releases, alertmanager.
ALERTMANAGER_PROGRAMS = ("alertmanager", "prometheus-alertmanager")
ALERTMANAGER_INSTALL_HINT = (
    "apt-get install prometheus-alertmanager on Debian/Ubuntu, or a release from "
    "https://prometheus.io/download/"
)
AIRFLOW_HEALTH_PATH = "/api/v2/monitor/health"
AIRFLOW_INSTALL_HINT = "pip install -e '.[airflow]' (`make install` does)"

# The dashboard: Streamlit's script (relative to the package) and its health endpoint.
DASHBOARD_SCRIPT = Path("dashboard") / "app.py"
DASHBOARD_HEALTH_PATH = "/_stcore/health"


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
    # The working directory (None: the caller's), where a service finds its ``.env``.
    cwd: Path | None = None

    @property
    def url(self) -> str:
        """The base URL a client on this machine uses."""
        return f"http://{host_port(client_host(self.host), self.port)}"

    @property
    def health_url(self) -> str:
        return f"{self.url}{self.health_path}"


def package_dir() -> str:
    """The folder of the bikecount package (``src/bikecount`` in an editable install)."""
    return str(Path(bikecount.__file__).resolve().parent)


def mlflow_service(settings: Settings, host: str, port: int) -> ServiceSpec:
    """The local MLflow server: SQLite under ``mlruns_dir``, artifacts in ``artifacts_dir``.

    Experiments it creates keep their artifacts at the folder's ``file://`` URI, as those the
    CLI creates without a server do: the CLI, the APIs and the server share this machine's disk,
    and a model trained through the stack stays loadable once the stack is stopped (a proxied
    ``mlflow-artifacts:/`` root would need the server running).
    """
    args = mlflow_server_args(
        host=host,
        port=port,
        backend_store_uri=settings.local_tracking_store,
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


def prometheus_service(settings: Settings, host: str, port: int) -> ServiceSpec:
    """Prometheus from PATH, with the config :func:`write_prometheus_config` writes."""
    folder = prometheus_dir(settings).resolve()
    command = (
        "prometheus",
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={host_port(host, port)}",
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
    command = (
        alertmanager_program() or ALERTMANAGER_PROGRAMS[0],
        f"--config.file={folder / 'alertmanager.yml'}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address={host_port(host, port)}",
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


def dags_folder() -> Path | None:
    """``dags/`` of a source checkout (absent from an installed wheel)."""
    path = Path(package_dir()).parents[1] / "dags"
    return path if path.is_dir() else None


def airflow_service(
    settings: Settings,
    host: str,
    port: int,
    *,
    api_url: str,
    tracking_uri: str,
    alertmanager_url: str | None = None,
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
    if alertmanager_url is not None:
        env["BIKECOUNT_ALERTMANAGER_URL"] = alertmanager_url
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


def dashboard_service(
    settings: Settings, host: str, port: int, *, api_url: str, tracking_uri: str
) -> ServiceSpec:
    """The Streamlit dashboard, reading the stack's store, MLflow server and RegModel API."""
    script = str(Path(package_dir()) / DASHBOARD_SCRIPT)
    env = dashboard_env(tracking_uri, api_url, absolute_database_url(settings.pipeline_db_url))
    return ServiceSpec(
        name=DASHBOARD,
        command=python_module(
            sys.executable, "streamlit", streamlit_args(script, host=host, port=port)
        ),
        host=host,
        port=port,
        port_option="--dashboard-port",
        usual_owner="another Streamlit app?",
        env=env,
        health_path=DASHBOARD_HEALTH_PATH,
    )


@dataclass(frozen=True)
class StackOptions:
    """Which optional services run and how; where everything listens is in the settings
    (``host``, ``*_port``), which the command line overrides."""

    legacy: bool = False
    reload: bool = False
    monitoring: bool = False
    # With ``monitoring``: Alertmanager too, delivering Prometheus' alerts.
    alertmanager: bool = False
    airflow: bool = False
    dashboard: bool = True
    bootstrap: bool = True
    health_timeout: float = 120.0
    grace_seconds: float = 10.0


def build_services(settings: Settings, options: StackOptions | None = None) -> list[ServiceSpec]:
    """The local stack, in start order: MLflow, the RegModel API, with ``legacy`` the
    ClassModel API, with ``monitoring`` Prometheus scraping them (and with ``alertmanager``
    Alertmanager delivering its alerts), with ``airflow`` Airflow
    running the DAGs against them, and with ``dashboard`` the Streamlit dashboard. The APIs
    talk to the MLflow server started here; host and ports are the settings'."""
    options = options or StackOptions()
    host = settings.host
    mlflow = mlflow_service(settings, host, settings.mlflow_port)

    def api(name: str, app: str, port: int) -> ServiceSpec:
        return api_service(
            name, app, host=host, port=port, tracking_uri=mlflow.url, reload=options.reload
        )

    regmodel = api(REGMODEL, REGMODEL_APP, settings.api_port)
    services = [mlflow, regmodel]
    if options.legacy:
        services.append(api(CLASSMODEL, CLASSMODEL_APP, settings.classmodel_port))
    if options.monitoring and options.alertmanager:
        services.append(alertmanager_service(settings, host, settings.alertmanager_port))
    if options.monitoring:
        services.append(prometheus_service(settings, host, settings.prometheus_port))
    clients = {"api_url": regmodel.url, "tracking_uri": mlflow.url}
    if options.airflow:
        # The daily health check posts counter faults to the stack's Alertmanager.
        alerting = next((spec.url for spec in services if spec.name == ALERTMANAGER), None)
        services.append(
            airflow_service(
                settings, host, settings.airflow_port, **clients, alertmanager_url=alerting
            )
        )
    if options.dashboard:
        services.append(dashboard_service(settings, host, settings.dashboard_port, **clients))
    return services
