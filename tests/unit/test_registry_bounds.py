"""MLflow's client is bounded wherever bikecount points it at a tracking server, and pointing it
writes the environment only at a process's start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

import helpers
from bikecount.config import Settings
from bikecount.registry import (
    Registry,
    RegistryUnavailableError,
    bound_mlflow_requests,
    point_mlflow_at,
)

BOUNDS = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")


def test_mlflow_requests_are_bounded_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*BOUNDS, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.setenv(name, "recorded")  # so that the test's own values are undone
        monkeypatch.delenv(name)
    settings = Settings(_env_file=None, mlflow_request_timeout_seconds=7, mlflow_request_retries=1)
    bound_mlflow_requests(settings)  # what every process does at its start
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_mlflow_variables_set_by_the_user_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    bound_mlflow_requests(Settings(_env_file=None))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"


class WriteRecorder(dict[str, str]):
    """A stand-in for ``os.environ`` that remembers the names written."""

    def __init__(self, environ: dict[str, str]) -> None:
        super().__init__(environ)
        self.written: list[str] = []

    def __setitem__(self, name: str, value: str) -> None:
        self.written.append(name)
        super().__setitem__(name, value)


@pytest.fixture
def mlflow_uris() -> Iterator[None]:
    """MLflow's global URIs put back after the test."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    point_mlflow_at(*previous)


def test_a_registry_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registries are made in request and training threads, where a write would race with a
    # thread copying the environment (CI: "dictionary changed size during iteration").
    for name in (*BOUNDS, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    Registry(Settings(_env_file=None, mlflow_request_timeout_seconds=7))
    assert dict(os.environ) == before


@pytest.mark.usefixtures("mlflow_uris")
def test_runs_pointed_at_a_registry_again_write_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(Settings(_env_file=None, mlruns_dir=tmp_path))
    registry.use_for_runs()  # at the process's start (an API's lifespan)
    with monkeypatch.context() as patched:
        recorder = WriteRecorder(dict(os.environ))
        patched.setattr(os, "environ", recorder)
        registry.use_for_runs()  # as train() and the monitoring do, in request threads
    assert recorder.written == []
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == registry.tracking_uri


def test_an_unanswering_server_is_named_without_credentials() -> None:
    port = helpers.free_port()  # closed again: nothing listens there
    settings = Settings(_env_file=None, mlflow_tracking_uri=f"http://me:secret@127.0.0.1:{port}")
    with pytest.raises(RegistryUnavailableError) as caught:
        Registry(settings).check_reachable()
    message = str(caught.value)
    assert f"http://127.0.0.1:{port} cannot be reached: it does not answer" in message
    assert "secret" not in message
    Registry(Settings(_env_file=None, mlflow_tracking_uri="sqlite:///x.db")).check_reachable()


def test_registry_errors_never_carry_the_uris_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    port = helpers.free_port()
    registry = Registry(
        Settings(_env_file=None, mlflow_tracking_uri=f"http://me:secret@127.0.0.1:{port}")
    )
    for ask in (lambda: registry.champion("rf"), lambda: registry.list_versions("rf")):
        with pytest.raises(RegistryUnavailableError) as caught:
            ask()
        message = str(caught.value)
        assert message.startswith(f"MLflow at http://127.0.0.1:{port} could not")
        assert "secret" not in message and "me:" not in message
