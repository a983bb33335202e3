"""What the dashboard reads from the MLflow registry: versions, metrics, champion decisions.

Versions come from :func:`bikecount.registry.list_versions`; what a version's run says about it
(the champion decision and what the model knows) comes from the run's tags and parameters, read
through MLflow's public client. Reachability is asked first, with a short timeout, because
``list_versions`` reads an unreachable registry as an empty one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pandas as pd
from mlflow.tracking import MlflowClient

from bikecount.evaluate import CLASSIFICATION_METRICS, REGRESSION_METRICS
from bikecount.models import get_spec
from bikecount.registry import list_versions, registered_name

HEALTH_TIMEOUT_SECONDS = 2.0
# What a run records about the data its model knows (issue 9), shown where present.
KNOWN_DATA_KEYS = ("trained_until", "rows_fit")
DECISION_TAG = "champion_decision"


class RegistryUnavailableError(RuntimeError):
    """The MLflow tracking server does not answer."""


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def check_mlflow(tracking_uri: str) -> None:
    """Raise when an MLflow server at ``tracking_uri`` does not answer its health check.

    A local store (SQLite, a folder) needs no server and always passes.

    Raises:
        RegistryUnavailableError: naming the URI and how to start the server.
    """
    if not is_remote(tracking_uri):
        return
    try:
        response = httpx.get(
            tracking_uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_SECONDS, trust_env=False
        )
    except httpx.HTTPError as exc:
        raise RegistryUnavailableError(f"MLflow at {tracking_uri} does not answer ({exc})") from exc
    if response.status_code != 200:
        raise RegistryUnavailableError(
            f"MLflow at {tracking_uri} answered its health check with {response.status_code}"
        )


def metric_columns(model_type: str) -> tuple[str, ...]:
    task = get_spec(model_type).task
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def read_model_versions(
    client: MlflowClient, model_type: str, ui_url: str | None = None
) -> pd.DataFrame:
    """Every registered version of ``model_type``, newest first, with what decided its fate.

    Returns:
        Columns version, champion, test_mode, registered (UTC), the holdout metrics of the type,
        trained_until, rows_fit, decision (the run's champion decision) and, with ``ui_url``,
        run_link and version_link into the MLflow UI.
    """
    rows = []
    for info in list_versions(client, model_type):
        run = client.get_run(info.run_id) if info.run_id else None
        tags = run.data.tags if run else {}
        params = run.data.params if run else {}
        row: dict[str, object] = {
            "version": info.version,
            "champion": info.champion,
            "test_mode": info.test_mode,
            "registered": datetime.fromtimestamp(info.created / 1000, tz=UTC),
            **{name: info.metrics.get(name) for name in metric_columns(model_type)},
            **{key: tags.get(key, params.get(key)) for key in KNOWN_DATA_KEYS},
            "decision": tags.get(DECISION_TAG),
        }
        if ui_url and run is not None:
            row["run_link"] = run_link(ui_url, run.info.experiment_id, info.run_id)
            row["version_link"] = version_link(ui_url, model_type, info.version)
        rows.append(row)
    return pd.DataFrame(rows)


def run_link(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def version_link(ui_url: str, model_type: str, version: int) -> str:
    name = quote(registered_name(model_type))
    return f"{ui_url.rstrip('/')}/#/models/{name}/versions/{version}"
