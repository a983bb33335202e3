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
