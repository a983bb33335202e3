"""Shared fixtures: small generated data sets, built once per session.

``tests/`` has no ``__init__.py`` files, so this folder is put on ``sys.path`` for
``import helpers`` (the test-data factories) to work from every test folder, and so is
``deploy/ci/`` (a Docker engine, the registry images' stand-ins) for the container tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "deploy" / "ci"))

import helpers  # noqa: E402

# Figures the end-to-end tests measure (build times, image sizes...), printed in the summary:
# never asserted, as timings depend on the machine and its load.
FIGURES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[str]:
    """Append a line to print it in pytest's summary."""
    return request.config.stash[FIGURES]


@pytest.fixture(scope="session", autouse=True)
def no_developer_configuration() -> Iterator[None]:
    """The developer's own ``BIKECOUNT_*`` and ``MLFLOW_*`` variables reach neither the tests
    nor the servers they start: each test says what it runs with."""
    mine = ("BIKECOUNT_", "MLFLOW_")
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith(mine)}
    # The test process bounds MLflow's client at its start, as bikecount's processes do.
    from bikecount.config import Settings
    from bikecount.registry import bound_mlflow_requests

    bound_mlflow_requests(Settings(_env_file=None))
    yield
    os.environ.update(saved)


# MLflow copies the URIs it is pointed at into the environment, for its child processes.
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def restored_process_state() -> Iterator[None]:
    """Put back, after each test, what a test may leave in this process for the next ones.

    - pytest's own ``__main__``: Streamlit's AppTest runs a page script as ``__main__`` and leaves
      it there; a training fit started later (a fork-server child) re-runs the caller's main
      script, and a page script run alone fails (``NameError: __args``).
    - MLflow's URIs in the environment: a command run in this process points MLflow at its store
      and MLflow writes that into ``os.environ``; a later test's ``bikecount`` child inherits the
      environment, and ``MLFLOW_TRACKING_URI`` would send its runs to the earlier test's store.

    - MLflow's global URIs (``mlflow.set_tracking_uri``/``set_registry_uri``, module globals of
      its fluent API): an ``MlflowClient(tracking_uri)`` built later without a registry URI takes
      the global one, and read another test's registry ("Registered Model ... not found").

    Either way, which tests ran first decided whether a test passed.
    """
    from mlflow.tracking._model_registry import utils as registry_uris
    from mlflow.tracking._tracking_service import utils as tracking_uris

    main = sys.modules["__main__"]
    uris = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    # Private globals: MLflow has no public way to unset a URI once set (set_*(None) writes "").
    fluent = (tracking_uris._tracking_uri, registry_uris._registry_uri)
    yield
    sys.modules["__main__"] = main
    tracking_uris._tracking_uri, registry_uris._registry_uri = fluent
    for name, value in uris.items():
        if os.environ.get(name) == value:
            continue  # nothing to write: other threads may be reading the environment
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def single_openmp_thread() -> Iterator[None]:
    """One OpenMP thread for scikit-learn's native code during the tests.

    The test machines have two cores shared with other work; two OpenMP threads spinning on a
    busy core made gradient boosting two to three times slower, with no change in results.
    """
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime that the limit applies to)

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="session")
def small_raw() -> pd.DataFrame:
    """6 counters x 2 months (March-April 2021) of raw records in the export spelling."""
    return helpers.generate_raw(helpers.SMALL_CONFIG)


@pytest.fixture(scope="session")
def small_frame(small_raw: pd.DataFrame) -> pd.DataFrame:
    """The canonical frame of ``small_raw``."""
    from bikecount.records import parse_records

    return parse_records(small_raw, require_count=True).frame
