"""Trainings run below the priority of serving: the API's job thread is lowered, and the process
a fit runs in (``bikecount.isolated_fit``) takes the priority of the thread that asked for it."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

import helpers
from bikecount.api.jobs import TRAINING_NICENESS, TrainingJobs
from bikecount.config import Settings
from bikecount.isolated_fit import fit_isolated, lower_thread_priority, thread_niceness, warm_up
from bikecount.registry import Registry
from bikecount.stopping import StopToken, TrainingCancelledError
from bikecount.train import TrainRequest

# How long a fit's process may take to show up, or to stop, on a busy machine.
PROCESS_TIMEOUT_SECONDS = 60.0


def test_a_fit_runs_at_the_priority_of_the_thread_that_asks_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fit's process re-runs the caller's main script; in a long session Streamlit's page tests
    # leave pytest's __main__ pointing at a page script of theirs that cannot run alone.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    warm_up()  # from this thread: the fork server keeps the priority of the process
    before = thread_niceness()
    assert before < TRAINING_NICENESS, "the tests run at low priority already: nothing to see"
    rng = np.random.default_rng(0)
    X, y = rng.random((20_000, 8)), rng.random(20_000)
    slow = RandomForestRegressor(n_estimators=5_000, n_jobs=1, random_state=0)  # minutes
    stop = StopToken()
    outcome: list[object] = []

    def fit_at_low_priority() -> None:
        lower_thread_priority(TRAINING_NICENESS)
        outcome.append(thread_niceness())
        try:
            fit_isolated(slow, X, y, stop)
        except TrainingCancelledError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=fit_at_low_priority)
    worker.start()
    try:
        helpers.wait_until(
            lambda: len(helpers.fit_processes()) == 1,
            PROCESS_TIMEOUT_SECONDS,
            "a fit's process",
            interval=0.05,
        )
        (child,) = helpers.fit_processes()
        # Set by the child as it starts, before it fits.
        helpers.wait_until(
            lambda: child.nice() == TRAINING_NICENESS,
            PROCESS_TIMEOUT_SECONDS,
            "the fit at low priority",
            interval=0.05,
        )
    finally:
        stop.cancel("the test has seen the fit")
        worker.join(PROCESS_TIMEOUT_SECONDS)
    assert not worker.is_alive()
    assert outcome[0] == TRAINING_NICENESS
    assert isinstance(outcome[1], TrainingCancelledError)  # killed at once, not fitted to the end
    assert not child.is_running()
    assert thread_niceness() == before  # only the thread that asked was lowered


def test_the_apis_training_jobs_run_at_low_priority(tmp_path: Path) -> None:
    seen: list[int] = []

    def stand_in(
        request: TrainRequest, settings: Settings, registry: Registry, **kwargs: object
    ) -> None:
        seen.append(thread_niceness())
        raise ValueError("a stand-in that trains nothing")

    before = thread_niceness()
    settings = helpers.local_settings(tmp_path)
    jobs = TrainingJobs(settings, Registry(settings), run=stand_in)  # type: ignore[arg-type]
    request = TrainRequest(model_type="rf", data_source="reference", env="dev", hyperparams={})
    job = jobs.submit(request)
    assert job.done.wait(10)
    assert seen == [max(before, TRAINING_NICENESS)]
    assert job.status == "failed"
    assert thread_niceness() == before  # the thread that submitted (a request's) is untouched
