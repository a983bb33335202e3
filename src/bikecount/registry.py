"""MLflow tracking and the model registry: experiments per env, versions, the champion alias.

One :class:`Registry` per process (or per settings) holds an explicit ``MlflowClient``: nothing
here depends on MLflow's global tracking URI, except the runs that MLflow's fluent API logs
(``mlflow.start_run``, ``log_model``), for which :meth:`Registry.use_for_runs` points it here.
"Not there" and "cannot be asked" are told apart: :class:`ModelNotFoundError` only when the model,
version or champion does not exist, :class:`RegistryUnavailableError` when MLflow cannot be
reached or fails to answer.

The registry's other jobs live beside it, and their public names are importable from here too:
MLflow's process-wide setup (:mod:`bikecount.mlflow_setup`), the errors
(:mod:`bikecount.registry_errors`), what a version is and which one a metric prefers
(:mod:`bikecount.model_versions`), and downloading a version (:mod:`bikecount.model_loading`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bikecount.config import Env, Settings
from bikecount.mlflow_setup import (
    bound_mlflow_requests,
    is_remote,
    point_mlflow_at,
    quiet_mlflow,
    shown_uri,
)
from bikecount.model_loading import download_model
from bikecount.model_versions import VersionInfo, best_of, check_metric, trained_until, version_info
from bikecount.models import get_spec
from bikecount.models.protocol import RecordModel
from bikecount.registry_errors import (
    NOT_FOUND_CODES,
    ModelNotFoundError,
    RegistryUnavailableError,
    asking,
    unavailable,
)

__all__ = [
    "CHAMPION",
    "ModelNotFoundError",
    "Registry",
    "RegistryUnavailableError",
    "VersionInfo",
    "bound_mlflow_requests",
    "is_remote",
    "point_mlflow_at",
    "quiet_mlflow",
    "shown_uri",
    "trained_until",
]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PROBE_TIMEOUT_SECONDS = 2.0


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

    # MLflow's failures named after this registry's URI (credentials left out).
    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        with asking(self.tracking_uri, what):
            yield

    def _unavailable(self, what: str, detail: str) -> RegistryUnavailableError:
        return unavailable(self.tracking_uri, what, detail)

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
        infos = [
            version_info(model_type, v, champion, self.get_run(v.run_id) if v.run_id else None)
            for v in versions
        ]
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def best_version(self, model_type: str, metric: str) -> VersionInfo:
        """The version with the best holdout ``metric`` (ties: the newest).

        Raises:
            ValueError: ``metric`` is not a holdout metric (said before MLflow is asked).
            ModelNotFoundError: no version has that metric.
            RegistryUnavailableError: MLflow could not be asked.
        """
        check_metric(metric)
        return best_of(self.list_versions(model_type), model_type, metric)

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

    def load_version(self, model_type: str, version: int) -> RecordModel:
        """The fitted estimator of a registered version (it takes raw records).

        Downloaded through this registry's URIs (not MLflow's global ones), then loaded whole.
        """
        return download_model(self.tracking_uri, self.registered_name(model_type), version)
