"""What ``docker-compose.yaml`` must say for its services to run as ``bikecount up`` runs them:
the same command lines (from :mod:`bikecount.stack.services`) with the containers' paths, every
interface bound and the MLflow server reached by its service name.
``tests/unit/stack/test_compose.py`` checks the file against these."""

from __future__ import annotations

from pathlib import Path

from bikecount.stack.addresses import allowed_hosts
from bikecount.stack.commands import (
    api_env,
    dashboard_env,
    mlflow_server_args,
    python_module,
    streamlit_args,
    uvicorn_args,
)
from bikecount.stack.services import (
    CLASSMODEL,
    CLASSMODEL_APP,
    DASHBOARD,
    DASHBOARD_SCRIPT,
    MLFLOW,
    REGMODEL,
    REGMODEL_APP,
)

# Inside the containers (docker-compose.yaml): ports, mount points and names.
COMPOSE_BIND_HOST = "0.0.0.0"
COMPOSE_MLFLOW_HOST = "mlflow"
COMPOSE_PORTS = {MLFLOW: 5000, REGMODEL: 8000, CLASSMODEL: 8080, DASHBOARD: 8501}
COMPOSE_MLRUNS = "/mlflow/mlruns"
COMPOSE_ARTIFACTS = "/mlflow/artifacts"
COMPOSE_ARTIFACT_ROOT = "mlflow-artifacts:/"
COMPOSE_PACKAGE_DIR = "/app/src/bikecount"


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
    script = str(Path(COMPOSE_PACKAGE_DIR) / DASHBOARD_SCRIPT)
    dashboard = streamlit_args(script, host=COMPOSE_BIND_HOST, port=COMPOSE_PORTS[DASHBOARD])
    commands[DASHBOARD] = list(python_module("python", "streamlit", dashboard))
    return commands


def compose_api_env() -> dict[str, str]:
    """The tracking-server environment every API container must have."""
    return api_env(f"http://{COMPOSE_MLFLOW_HOST}:{COMPOSE_PORTS[MLFLOW]}")


def compose_dashboard_env() -> dict[str, str]:
    """The environment the dashboard container must have (the store URL is the user's)."""
    env = dashboard_env(
        f"http://{COMPOSE_MLFLOW_HOST}:{COMPOSE_PORTS[MLFLOW]}",
        f"http://regmodel-backend:{COMPOSE_PORTS[REGMODEL]}",
        "",
    )
    del env["BIKECOUNT_PIPELINE_DB_URL"]
    return env
