"""Whether the optional services ``bikecount up`` was asked for can start on this machine,
checked before anything starts."""

from __future__ import annotations

import importlib.util
import shutil

from bikecount.cli.console import err_console, fail
from bikecount.stack.services import (
    AIRFLOW_INSTALL_HINT,
    ALERTMANAGER_INSTALL_HINT,
    PROMETHEUS_INSTALL_HINT,
    alertmanager_program,
    dags_folder,
)


def check_airflow() -> None:
    """Fail before anything starts when Airflow or the DAG folder is missing."""
    if importlib.util.find_spec("airflow") is None:
        fail("--airflow: Airflow is not installed", hint=AIRFLOW_INSTALL_HINT)
    if dags_folder() is None:
        fail(
            "--airflow: no dags/ folder beside the bikecount sources",
            hint="run from a checkout of the repository (pip install -e .)",
        )


def monitoring_available() -> bool:
    """Whether ``prometheus`` is on PATH; if not, say how to get it (the stack starts anyway)."""
    if shutil.which("prometheus") is not None:
        return True
    err_console.print(
        f"[yellow]--monitoring: no prometheus on PATH[/] ({PROMETHEUS_INSTALL_HINT}); "
        "starting without it. /metrics is served anyway; `docker compose --profile monitoring "
        "up` runs Prometheus and Grafana in containers."
    )
    return False


def alertmanager_available() -> bool:
    """Whether Alertmanager is on PATH; if not, say how to get it (the stack starts anyway)."""
    if alertmanager_program() is not None:
        return True
    err_console.print(
        f"[yellow]--monitoring: no Alertmanager on PATH[/] ({ALERTMANAGER_INSTALL_HINT}); "
        "Prometheus fires its alerts, and they reach nobody."
    )
    return False
