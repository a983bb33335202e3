"""MLflow tracking and the model registry: experiments per env, versions, the champion alias."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from bikecount.config import Env, Settings
from bikecount.evaluate import HIGHER_IS_BETTER
from bikecount.models import get_spec

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PROBE_TIMEOUT_SECONDS = 2.0


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
            "metrics": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
        }


class TrackingUnreachableError(MlflowException):
    """The tracking server does not answer: whatever needs it (training, monitoring) stops."""


def configure_tracking(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI (creating a local SQLite store's folder), with
    bounded HTTP requests (see :func:`bound_mlflow_requests`)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    bound_mlflow_requests(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def bound_mlflow_requests(settings: Settings) -> None:
    """Bound every request of MLflow's client: its defaults (7 retries with a doubling backoff,
    120 s timeouts) keep a call to a dead server waiting for minutes. MLflow reads these
    environment variables at each request; ones already set (``MLFLOW_HTTP_REQUEST_*``) win."""
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_seconds)
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_request_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def tracking_reachable(uri: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether the tracking server answers its health check; a local store is always there."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        return httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def require_tracking(settings: Settings) -> None:
    """A quick check, before work that needs MLflow starts, that its server answers.

    Raises:
        TrackingUnreachableError: naming the server (credentials removed).
    """
    uri = settings.tracking_uri
    if not tracking_reachable(uri):
        parts = urlsplit(uri)  # no credentials in the message
        shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        raise TrackingUnreachableError(
            f"the MLflow tracking server at {shown} does not answer (within "
            f"{PROBE_TIMEOUT_SECONDS:g} s); retry when it is up"
        )


def ensure_experiment(settings: Settings, env: Env) -> str:
    """The id of experiment ``bikecount-<env>``, created with the env's artifact root if new.

    With a tracking server in ``dev`` the server's own artifact store (proxied) is used; a local
    store needs an explicit root, and ``prod`` always writes to its ``gs://`` bucket.
    """
    name = settings.experiment_name(env)
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
