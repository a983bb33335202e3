"""Fixtures of the integration tests: one MLflow server for the whole session.

The server is started as ``bikecount up`` starts it (``servers.start_mlflow``). Each test module
has its own place on it (``tracking``): a prefix of its own for every MLflow name
(``BIKECOUNT_MLFLOW_PREFIX``), so its registered models, champions and experiments are its
own, whatever the other modules trained. Modules that stop or freeze MLflow start their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The harness modules beside the tests (servers, opendata_server...): pytest's importlib mode
# leaves sys.path alone, so this folder is put there for the tests' ``from servers import``.
sys.path.insert(0, str(Path(__file__).parent))

from servers import STARTED, ServerProcess, Tracking, running, start_mlflow  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The session's MLflow tracking server."""
    with running(start_mlflow(tmp_path_factory.mktemp("mlflow"))) as (server,):
        yield server


@pytest.fixture(scope="module")
def tracking(mlflow_server: ServerProcess, request: pytest.FixtureRequest) -> Tracking:
    """This module's place on the session's MLflow server: ``t-<module>-rf``, ``t-<module>-dev``."""
    module = request.path.stem.removeprefix("test_").replace("_", "-")
    return Tracking(mlflow_server.url, f"t-{module}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if STARTED:
        started = ", ".join(f"{name} {count}" for name, count in sorted(STARTED.items()))
        terminalreporter.write_line(
            f"servers the integration harness started: {sum(STARTED.values())} ({started})"
        )
