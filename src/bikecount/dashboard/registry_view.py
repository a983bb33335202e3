"""What the dashboard reads from the MLflow registry: versions, metrics, champion decisions.

Versions come from :meth:`bikecount.registry.Registry.list_versions`; what a version's run says
about it (the champion decision and what the model knows) comes from the run's tags and
parameters. Reachability is asked first, with a short timeout, so that a page says "MLflow is
down" within seconds rather than after MLflow's client has retried.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pandas as pd

from bikecount.evaluate import CLASSIFICATION_METRICS, REGRESSION_METRICS
from bikecount.models import get_spec
from bikecount.registry import Registry, RegistryUnavailableError

__all__ = ["RegistryUnavailableError", "check_mlflow", "read_model_versions"]

HEALTH_TIMEOUT_SECONDS = 2.0
# What a run records about the data its model knows (issue 9), shown where present.
KNOWN_DATA_KEYS = ("trained_until", "rows_fit")
DECISION_TAG = "champion_decision"


def check_mlflow(registry: Registry) -> None:
    """Raise at once when the registry's MLflow server does not answer (a local store always
    does).

    Raises:
        RegistryUnavailableError: naming the URI.
    """
    registry.check_reachable(HEALTH_TIMEOUT_SECONDS)


def metric_columns(model_type: str) -> tuple[str, ...]:
    task = get_spec(model_type).task
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def read_model_versions(
    registry: Registry, model_type: str, ui_url: str | None = None
) -> pd.DataFrame:
    """Every registered version of ``model_type``, newest first, with what decided its fate.

    Returns:
        Columns version, champion, test_mode, registered (UTC), the holdout metrics of the type,
        trained_until, rows_fit, decision (the run's champion decision) and, with ``ui_url``,
        run_link and version_link into the MLflow UI.
    """
    rows = []
    for info in registry.list_versions(model_type):
        run = registry.get_run(info.run_id) if info.run_id else None
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
            row["version_link"] = version_link(
                ui_url, registry.registered_name(model_type), info.version
            )
        rows.append(row)
    return pd.DataFrame(rows)


def run_link(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def version_link(ui_url: str, registered_name: str, version: int) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{quote(registered_name)}/versions/{version}"
