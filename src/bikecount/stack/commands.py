"""The arguments and environments of the programs the stack runs (MLflow, uvicorn, Streamlit).

:mod:`bikecount.stack.services` (``bikecount up``) and :mod:`bikecount.stack.compose` (the
containers) build their command lines from these, so the two run the same flags.
"""

from __future__ import annotations

from collections.abc import Sequence

# The dashboard asks MLflow with a short timeout and no retry storm: a page must say "MLflow is
# down" within seconds, not after MLflow's client has retried for minutes.
DASHBOARD_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

# MLflow's job runner (four more processes, GenAI features) is of no use to bikecount.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


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


def streamlit_args(script: str, *, host: str, port: int) -> list[str]:
    """Arguments of ``python -m streamlit``: run ``script`` headless, no telemetry, no watcher."""
    return [
        "run",
        script,
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


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


def python_module(python: str, module: str, args: Sequence[str]) -> tuple[str, ...]:
    return (python, "-m", module, *args)


def dashboard_env(tracking_uri: str, api_url: str, db_url: str) -> dict[str, str]:
    """Environment of the dashboard: the MLflow server, the RegModel API and the store it reads."""
    return {
        "BIKECOUNT_MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BIKECOUNT_PIPELINE_API_URL": api_url,
        "BIKECOUNT_PIPELINE_DB_URL": db_url,
        **DASHBOARD_MLFLOW_ENV,
    }
