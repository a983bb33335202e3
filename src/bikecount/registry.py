"""MLflow tracking and the model registry: experiments per env, versions, the champion alias."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from bikecount.config import Env, Settings
from bikecount.evaluate import HIGHER_IS_BETTER, finite_metrics
from bikecount.models import get_spec

logger = logging.getLogger(__name__)

CHAMPION = "champion"


class ModelNotFoundError(LookupError):
    """No registered model (or version, or champion) matches the request."""


@dataclass
class VersionInfo:
    """A registered version with what selects it: its holdout metrics and tags."""

    model_type: str
    version: int
    run_id: str
    champion: bool
    test_mode: bool
    env: str | None
    created: int
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "version": self.version,
            "run_id": self.run_id,
            "champion": self.champion,
            "test_mode": self.test_mode,
            "env": self.env,
            "created": self.created,
            "metrics": finite_metrics(self.metrics),
        }


def quiet_mlflow() -> None:
    """Silence MLflow's warning on every cloudpickle save and load: the format is a deliberate
    choice (the models hold bikecount's own transformers). The one place that says so."""
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


def configure_tracking(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI (creating a local SQLite store's folder)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(settings: Settings, env: Env) -> str:
    """The id of the training experiment ``bikecount-<env>`` (see ensure_named_experiment)."""
    return ensure_named_experiment(settings, settings.experiment_name(env), env)


def ensure_named_experiment(settings: Settings, name: str, env: Env | None = None) -> str:
    """The id of experiment ``name``, created with the env's artifact root if new.

    With a tracking server in ``dev`` the server's own artifact store (proxied) is used; a local
    store needs an explicit root, and ``prod`` always writes to its ``gs://`` bucket.
    """
    env = env or settings.env
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    remote = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if (remote and env == "dev") else settings.artifact_root(env)
    logger.info("creating experiment %s (artifacts: %s)", name, location or "server default")
    return mlflow.create_experiment(name, artifact_location=location)


def registered_name(model_type: str) -> str:
    return get_spec(model_type).registered_name


def champion_version(client: MlflowClient, model_type: str) -> ModelVersion | None:
    """The version carrying the champion alias, or None."""
    try:
        return client.get_model_version_by_alias(registered_name(model_type), CHAMPION)
    except (MlflowException, RestException):
        return None


def trained_until(params: Mapping[str, str]) -> pd.Timestamp | None:
    """The last timestamp a registered model was fitted on, from its run's parameters.

    Runs made before refitting existed were fitted on the rows up to their holdout cutoff.
    """
    value = params.get("trained_until")
    if value is None and params.get("refit") is None:
        value = params.get("holdout_cutoff")
    return pd.Timestamp(value) if value else None


def champion_trained_until(client: MlflowClient, model_type: str) -> pd.Timestamp | None:
    """What the champion of ``model_type`` knows (None: no champion, or not recorded)."""
    champion = champion_version(client, model_type)
    if champion is None or not champion.run_id:
        return None
    return trained_until(client.get_run(champion.run_id).data.params)


def set_champion(client: MlflowClient, model_type: str, version: int | str) -> None:
    client.set_registered_model_alias(registered_name(model_type), CHAMPION, str(version))


def list_versions(client: MlflowClient, model_type: str) -> list[VersionInfo]:
    """Every registered version of a model type, newest first, with its run's metrics."""
    name = registered_name(model_type)
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except (MlflowException, RestException):
        return []
    champion = champion_version(client, model_type)
    infos = [_version_info(client, model_type, v, champion) for v in versions]
    return sorted(infos, key=lambda info: info.version, reverse=True)


def _version_info(
    client: MlflowClient, model_type: str, version: ModelVersion, champion: ModelVersion | None
) -> VersionInfo:
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    if version.run_id:
        run = client.get_run(version.run_id)
        metrics = {k: v for k, v in run.data.metrics.items() if k in HIGHER_IS_BETTER}
        tags = run.data.tags
    return VersionInfo(
        model_type=model_type,
        version=int(version.version),
        run_id=version.run_id or "",
        champion=champion is not None and champion.version == version.version,
        test_mode=tags.get("test_mode") == "true",
        env=tags.get("env"),
        created=int(version.creation_timestamp or 0),
        metrics=metrics,
    )


def best_version(client: MlflowClient, model_type: str, metric: str) -> VersionInfo:
    """The version with the best holdout ``metric`` (ties: the newest).

    Raises:
        ModelNotFoundError: no version has that metric.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {', '.join(HIGHER_IS_BETTER)}"
        )
    scored = [
        v
        for v in list_versions(client, model_type)
        if metric in v.metrics and not math.isnan(v.metrics[metric])
    ]
    if not scored:
        raise ModelNotFoundError(f"no registered {model_type} version has the metric {metric!r}")
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(scored, key=lambda v: (sign * v.metrics[metric], v.version))


def resolve_version(client: MlflowClient, model_type: str, version: int | None = None) -> int:
    """A given version (checked to exist) or the champion's.

    Raises:
        ModelNotFoundError: no such version, or no champion yet.
    """
    name = registered_name(model_type)
    if version is not None:
        try:
            client.get_model_version(name, str(version))
        except (MlflowException, RestException):
            raise ModelNotFoundError(f"{name} has no version {version}") from None
        return version
    champion = champion_version(client, model_type)
    if champion is None:
        raise ModelNotFoundError(
            f"{name} has no champion yet; train one with `bikecount train --model {model_type}`"
        )
    return int(champion.version)


def load_version(model_type: str, version: int) -> Any:
    """The fitted estimator of a registered version (it takes raw records)."""
    return mlflow.sklearn.load_model(f"models:/{registered_name(model_type)}/{version}")
