"""The registry tells "not there" from "cannot be asked", on a real local store and a dead URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import helpers
from bikecount.config import Settings
from bikecount.models import UnknownModelTypeError
from bikecount.registry import ModelNotFoundError, Registry, RegistryUnavailableError


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry on a local SQLite store with nothing registered."""
    root = tmp_path_factory.mktemp("registry")
    return Registry(
        Settings(
            _env_file=None,
            mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifacts_dir=root / "artifacts",
        )
    )


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry whose server is not there (MLflow's client told not to retry for minutes)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    (port,) = helpers.free_ports(1)
    return Registry(Settings(_env_file=None, mlflow_tracking_uri=f"http://127.0.0.1:{port}"))


def test_a_model_never_registered_is_absent_not_an_error(local: Registry) -> None:
    assert local.champion("rf") is None
    assert local.list_versions("rf") == []
    assert local.champion_trained_until("rf") is None
    with pytest.raises(ModelNotFoundError, match="no champion yet"):
        local.resolve_version("rf")
    with pytest.raises(ModelNotFoundError, match="no version 3"):
        local.resolve_version("rf", 3)
    with pytest.raises(ModelNotFoundError, match="metric 'rmse'"):
        local.best_version("rf", "rmse")
    assert local.is_reachable()  # a local store needs no server


def test_experiments_are_created_once_with_the_envs_artifact_root(
    local: Registry, tmp_path: Path
) -> None:
    first = local.ensure_experiment("bikecount-test-experiment")
    assert local.ensure_experiment("bikecount-test-experiment") == first
    experiment = local.client.get_experiment(first)
    assert experiment.artifact_location == local.settings.artifact_root("dev")
    assert local.training_experiment() == local.ensure_experiment("bikecount-dev")


def test_names_in_mlflow_take_the_prefix(local: Registry) -> None:
    assert local.registered_name("rf") == "bikecount-rf"
    assert local.settings.experiment_name("prod") == "bikecount-prod"
    other = Registry(local.settings.model_copy(update={"mlflow_prefix": "city-b"}))
    assert other.registered_name("gbm") == "city-b-gbm"
    assert other.client.get_experiment(other.training_experiment()).name == "city-b-dev"
    with pytest.raises(UnknownModelTypeError):
        other.registered_name("xgb")
    with pytest.raises(ValidationError, match="mlflow_prefix"):
        Settings(_env_file=None, mlflow_prefix="two words")


def test_an_unreachable_server_is_an_error_never_an_empty_registry(
    unreachable: Registry,
) -> None:
    assert not unreachable.is_reachable()
    with pytest.raises(RegistryUnavailableError, match="cannot be reached"):
        unreachable.check_reachable()
    with pytest.raises(RegistryUnavailableError, match="could not read the rf champion"):
        unreachable.champion("rf")
    with pytest.raises(RegistryUnavailableError):
        unreachable.list_versions("rf")
    with pytest.raises(RegistryUnavailableError):
        unreachable.resolve_version("rf")
