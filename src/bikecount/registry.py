"""MLflow tracking and the model registry: experiments per env, versions, the champion alias.

One :class:`Registry` per process (or per settings) holds an explicit ``MlflowClient``: nothing
here depends on MLflow's global tracking URI, except the runs that MLflow's fluent API logs
(``mlflow.start_run``, ``log_model``), for which :meth:`Registry.use_for_runs` points it here.
"Not there" and "cannot be asked" are told apart: :class:`ModelNotFoundError` only when the model,
version or champion does not exist, :class:`RegistryUnavailableError` when MLflow cannot be
reached or fails to answer.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bikecount.config import Env, Settings
from bikecount.evaluate import HIGHER_IS_BETTER, finite_metrics
from bikecount.models import get_spec

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PROBE_TIMEOUT_SECONDS = 2.0


# MLflow's error codes for "no such model, version or alias" (a missing alias is reported as an
# invalid parameter by the registry store).
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class ModelNotFoundError(LookupError):
    """No registered model (or version, or champion) matches the request."""


class RegistryUnavailableError(RuntimeError):
    """MLflow cannot be reached, or failed to answer: nothing can be said about what exists."""


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


def is_remote(tracking_uri: str) -> bool:
    """Whether the URI names a tracking server (rather than a local store)."""
    return tracking_uri.startswith(("http://", "https://"))


def bound_mlflow_requests(settings: Settings) -> None:
    """Bound every request of MLflow's client: its defaults (7 retries with a doubling backoff,
    120 s timeouts) keep a call to a dead server waiting for minutes. MLflow reads these
    environment variables at each request; ones already set (``MLFLOW_HTTP_REQUEST_*``) win.

    Call it once at a process's start (the CLI, an API's ``create_app``, a DAG task), before any
    thread: a thread that reads the whole environment (a subprocess's copy, the proxy lookup of
    every HTTP request) while another writes it fails with "dictionary changed size during
    iteration".
    """
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_seconds)
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_request_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def point_mlflow_at(tracking_uri: str, registry_uri: str) -> None:
    """Set MLflow's global tracking and registry URIs, each only if it names another store.

    MLflow copies them into ``os.environ`` (for its child processes), the registry URI at every
    call. Pointed once at a process's start (``Registry.use_for_runs`` in an API's lifespan), the
    calls from request and training threads then write nothing: see
    :func:`bound_mlflow_requests` for the race a write from a thread starts.
    """
    if mlflow.get_tracking_uri() != tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_registry_uri() != registry_uri:
        mlflow.set_registry_uri(registry_uri)


def shown_uri(tracking_uri: str) -> str:
    """A tracking URI fit for a message: scheme, host and port, no credentials."""
    if not is_remote(tracking_uri):
        return tracking_uri
    parts = urlsplit(tracking_uri)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def trained_until(params: Mapping[str, str]) -> pd.Timestamp | None:
    """The last timestamp a registered model was fitted on, from its run's parameters.

    Runs made before refitting existed were fitted on the rows up to their holdout cutoff.
    """
    value = params.get("trained_until")
    if value is None and params.get("refit") is None:
        value = params.get("holdout_cutoff")
    return pd.Timestamp(value) if value else None


class Registry:
    """The MLflow registry and tracking store of ``settings``, through one explicit client.

    Args:
        settings: the tracking URI (``Settings.tracking_uri``) and the artifact roots.
        client: a client to use instead of one made for that URI.
    """

    def __init__(self, settings: Settings, client: MlflowClient | None = None) -> None:
        self.settings = settings
        self.tracking_uri = settings.tracking_uri
        self._client = client

    @property
    def client(self) -> MlflowClient:
        """The explicit client, made on first use (a local SQLite store's folder with it)."""
        if self._client is None:
            self._prepare_local_store()
            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def _prepare_local_store(self) -> None:
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )

    # --- reaching MLflow ---------------------------------------------------------------------

    def is_reachable(self, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
        """Whether the tracking server answers its health check; a local store is always there."""
        try:
            self.check_reachable(timeout)
        except RegistryUnavailableError:
            return False
        return True

    def check_reachable(self, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
        """Raise at once (no MLflow retries) when the tracking server does not answer.

        Raises:
            RegistryUnavailableError: naming the server and what happened.
        """
        if not is_remote(self.tracking_uri):
            return
        url = f"{self.tracking_uri.rstrip('/')}/health"
        shown = shown_uri(self.tracking_uri)  # no credentials in the message
        try:
            response = httpx.get(url, timeout=timeout, trust_env=False)
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(
                f"MLflow at {shown} cannot be reached: it does not answer (within {timeout:g} s: "
                f"{type(exc).__name__}); retry when it is up"
            ) from exc
        if response.status_code != 200:
            raise RegistryUnavailableError(
                f"MLflow at {shown} answered its health check with {response.status_code}; "
                "retry when it is up"
            )

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        """MLflow's failures as RegistryUnavailableError (callers handle "not found" first)."""
        try:
            yield
        except MlflowException as exc:
            raise self._unavailable(what, exc.message) from exc
        except OSError as exc:  # a local store's disk, a connection the client did not wrap
            raise self._unavailable(what, str(exc)) from exc

    def _unavailable(self, what: str, detail: str) -> RegistryUnavailableError:
        """The error saying MLflow could not do ``what``, with no credentials of the URI in it
        (MLflow's own message quotes the URLs it asked)."""
        shown = shown_uri(self.tracking_uri)
        detail = detail.replace(self.tracking_uri.rstrip("/"), shown)
        return RegistryUnavailableError(f"MLflow at {shown} could not {what}: {detail}")

    # --- runs and experiments ----------------------------------------------------------------

    def use_for_runs(self) -> str:
        """Point MLflow's fluent API (``start_run``, ``log_model``) at this registry.

        The one place that sets MLflow's global tracking URI: the runs ``train()``, monitoring
        and backtests log go through that API. Returns the URI.
        """
        self._prepare_local_store()
        point_mlflow_at(self.tracking_uri, self.tracking_uri)
        return self.tracking_uri

    def ensure_experiment(self, name: str, env: Env | None = None) -> str:
        """The id of experiment ``name``, created with the env's artifact root if new.

        Every experiment bikecount uses is created here. With a tracking server in ``dev`` the
        server's own artifact store is used; a local store needs an explicit root, and ``prod``
        always writes to its ``gs://`` bucket.
        """
        env = env or self.settings.env
        with self._asking(f"read experiment {name}"):
            experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        dev_server = is_remote(self.tracking_uri) and env == "dev"
        location = None if dev_server else self.settings.artifact_root(env)
        logger.info("creating experiment %s (artifacts: %s)", name, location or "server default")
        with self._asking(f"create experiment {name}"):
            return self.client.create_experiment(name, artifact_location=location)

    def training_experiment(self, env: Env | None = None) -> str:
        """The id of the training experiment ``<prefix>-<env>``."""
        return self.ensure_experiment(self.settings.experiment_name(env), env)

    def get_run(self, run_id: str) -> Run:
        with self._asking(f"read run {run_id}"):
            return self.client.get_run(run_id)

    # --- versions and the champion -----------------------------------------------------------

    def registered_name(self, model_type: str) -> str:
        get_spec(model_type)  # an unknown type is refused here, not sent to MLflow
        return self.settings.mlflow_name(model_type)

    def champion(self, model_type: str) -> ModelVersion | None:
        """The version carrying the champion alias; None when there is none (or no model).

        Raises:
            RegistryUnavailableError: MLflow could not be asked.
        """
        try:
            return self.client.get_model_version_by_alias(
                self.registered_name(model_type), CHAMPION
            )
        except MlflowException as exc:
            if exc.error_code in NOT_FOUND_CODES:
                return None
            raise self._unavailable(f"read the {model_type} champion", exc.message) from exc

    def champion_trained_until(self, model_type: str) -> pd.Timestamp | None:
        """What the champion of ``model_type`` knows (None: no champion, or not recorded)."""
        champion = self.champion(model_type)
        if champion is None or not champion.run_id:
            return None
        return trained_until(self.get_run(champion.run_id).data.params)

    def set_champion(self, model_type: str, version: int | str) -> None:
        with self._asking(f"set the {model_type} champion"):
            self.client.set_registered_model_alias(
                self.registered_name(model_type), CHAMPION, str(version)
            )

    def list_versions(self, model_type: str) -> list[VersionInfo]:
        """Every registered version of a model type, newest first, with its run's metrics
        ([] when the model is not registered).

        Raises:
            RegistryUnavailableError: MLflow could not be asked.
        """
        name = self.registered_name(model_type)
        with self._asking(f"list the versions of {name}"):
            versions = self.client.search_model_versions(f"name='{name}'")
        champion = self.champion(model_type) if versions else None
        infos = [self._version_info(model_type, v, champion) for v in versions]
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def _version_info(
        self, model_type: str, version: ModelVersion, champion: ModelVersion | None
    ) -> VersionInfo:
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        if version.run_id:
            run = self.get_run(version.run_id)
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

    def best_version(self, model_type: str, metric: str) -> VersionInfo:
        """The version with the best holdout ``metric`` (ties: the newest).

        Raises:
            ModelNotFoundError: no version has that metric.
            RegistryUnavailableError: MLflow could not be asked.
        """
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(
                f"unknown metric {metric!r}; expected one of {', '.join(HIGHER_IS_BETTER)}"
            )
        scored = [
            v
            for v in self.list_versions(model_type)
            if metric in v.metrics and not math.isnan(v.metrics[metric])
        ]
        if not scored:
            raise ModelNotFoundError(
                f"no registered {model_type} version has the metric {metric!r}"
            )
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        return max(scored, key=lambda v: (sign * v.metrics[metric], v.version))

    def resolve_version(self, model_type: str, version: int | None = None) -> int:
        """A given version (checked to exist) or the champion's.

        Raises:
            ModelNotFoundError: no such version, or no champion yet.
            RegistryUnavailableError: MLflow could not be asked.
        """
        name = self.registered_name(model_type)
        if version is not None:
            try:
                self.client.get_model_version(name, str(version))
            except MlflowException as exc:
                if exc.error_code in NOT_FOUND_CODES:
                    raise ModelNotFoundError(f"{name} has no version {version}") from None
                raise self._unavailable(f"read {name} v{version}", exc.message) from exc
            return version
        champion = self.champion(model_type)
        if champion is None:
            raise ModelNotFoundError(
                f"{name} has no champion yet; train one with `bikecount train --model {model_type}`"
            )
        return int(champion.version)

    def choose_version(
        self, model_type: str, version: int | None = None, metric: str | None = None
    ) -> int:
        """A given version, else the best by ``metric``, else the champion."""
        if version is None and metric is not None:
            return self.best_version(model_type, metric).version
        return self.resolve_version(model_type, version)

    def load_version(self, model_type: str, version: int) -> Any:
        """The fitted estimator of a registered version (it takes raw records).

        Downloaded through this registry's URIs (not MLflow's global ones), then loaded whole.
        """
        uri = f"models:/{self.registered_name(model_type)}/{version}"
        # MLflow 3 resolves a version's logged-model source with its *global* URIs, whatever
        # is passed: point them at this registry for the download, then put them back.
        previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        point_mlflow_at(self.tracking_uri, self.tracking_uri)
        try:
            with tempfile.TemporaryDirectory(prefix="bikecount-model-") as folder:
                with self._asking(f"download {uri}"):
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=uri,
                        dst_path=folder,
                        tracking_uri=self.tracking_uri,
                        registry_uri=self.tracking_uri,
                    )
                return mlflow.sklearn.load_model(local)
        finally:
            point_mlflow_at(*previous)


def champion_trained_until(registry: Registry, model_type: str) -> pd.Timestamp | None:
    """What the champion of ``model_type`` knows (None: no champion, or not recorded)."""
    return registry.champion_trained_until(model_type)
