"""The first start's background work (``bikecount.stack.background``), piece by piece, on real
parts: first models trained by ``bootstrap`` in a local SQLite MLflow store, full models trained as
jobs of the real RegModel app, and the pipeline store filled through it; the app is served over
HTTP by uvicorn from a thread.

The whole of it on a running MLflow server and API (a full model served without a restart) is
``test_first_start.py`` here; the bootstrap itself is ``tests/unit/stack/test_first_start.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
import uvicorn

import helpers
from bikecount.api.jobs import TRAINING_NICENESS
from bikecount.api.regmodel import create_app
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import write_datasets
from bikecount.models import parse_params
from bikecount.models.limits import estimate_training_cost
from bikecount.pipeline.ingest import SYNTHETIC, ingest
from bikecount.pipeline.store import daily_errors as daily_errors_table
from bikecount.pipeline.store import ingested_days, known_counters, read_predictions, read_table
from bikecount.pipeline.store_engine import open_store
from bikecount.registry import Registry
from bikecount.stack.background import (
    BackgroundWork,
    fill_store,
    forecast_days,
    recent_days,
    train_full_model,
    types_with_test_mode_champion,
)
from bikecount.stack.first_start import bootstrap, server_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# How long a training job may take to reach its fit, or to stop, on a busy machine.
JOB_TIMEOUT_SECONDS = 60.0


# --- After the first start: full models and the pipeline store ---------------------------------


@dataclass
class SmallStack:
    """Small generated data sets and a local MLflow store with first rf and gbm models."""

    settings: Settings
    tracking_uri: str

    @property
    def on_server(self) -> Settings:
        """The settings of a process of this stack: pointed at its MLflow store."""
        return server_settings(self.settings, self.tracking_uri)

    @property
    def registry(self) -> Registry:
        return Registry(self.on_server)


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory, small_raw: pd.DataFrame) -> SmallStack:
    """Only rf gets a full model below (the background work test); every other test needs gbm's
    first model, which no test replaces, so their order does not matter."""
    root = tmp_path_factory.mktemp("small-stack")
    settings = helpers.local_settings(root)
    settings.logs_dir.mkdir()
    write_datasets(small_raw, settings)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    on_server = server_settings(settings, tracking_uri)
    report = bootstrap(on_server, Registry(on_server), model_types=("rf", "gbm"))
    assert sorted(report.trained) == ["gbm", "rf"], report.failed
    return SmallStack(settings, tracking_uri)


def test_a_stopped_full_training_cancels_its_job_and_keeps_the_champion(
    small_stack: SmallStack,
) -> None:
    stop = threading.Event()
    outcome: list[object] = []

    def seen_niceness() -> list[int]:
        seen = []
        for fit in helpers.fit_processes():
            with suppress(psutil.NoSuchProcess):  # the evaluation fit ended, the refit starts
                seen.append(fit.nice())
        return seen

    with serving(small_stack.on_server) as api_url:
        worker = threading.Thread(
            target=lambda: outcome.append(
                train_full_model(small_stack.settings, api_url, "gbm", stop)
            )
        )
        worker.start()
        try:
            # The API's job fits in a process of its own, below the priority of serving (set
            # by the fit's process as it starts).
            helpers.wait_until(
                lambda: TRAINING_NICENESS in seen_niceness(),
                JOB_TIMEOUT_SECONDS,
                "the job's fit at low priority",
                interval=0.05,
            )
        finally:
            stop.set()
            worker.join(JOB_TIMEOUT_SECONDS)
        assert not worker.is_alive()
        assert outcome == [None]
        (run,) = small_stack.registry.client.search_runs(
            [small_stack.registry.training_experiment("dev")],
            filter_string="tags.model_type = 'gbm' and attributes.status = 'KILLED'",
        )
        job = httpx.get(f"{api_url}/train/{run.data.tags['job_id']}", trust_env=False).json()
    assert job["status"] == "cancelled", job
    assert "DELETE /train/" in job["error"]["message"]  # cancelled through the API
    assert helpers.fit_processes() == []  # killed with the job, not left fitting
    (version,) = small_stack.registry.list_versions("gbm")
    assert version.champion and version.test_mode


def test_a_full_training_waits_while_the_apis_mlflow_is_down(
    small_stack: SmallStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the API's own lookups: bounded
    down = small_stack.settings.model_copy(
        update={"mlflow_tracking_uri": helpers.closed_port_url()}
    )
    stop = threading.Event()
    messages: list[str] = []
    outcome: list[object] = []
    with serving(down) as api_url:
        worker = threading.Thread(
            target=lambda: outcome.append(
                train_full_model(small_stack.settings, api_url, "gbm", stop, messages.append)
            )
        )
        worker.start()
        try:
            # 503 (MLflow down): the stack restarts MLflow, so the API is asked again.
            helpers.wait_until(lambda: bool(messages), JOB_TIMEOUT_SECONDS, "the waiting message")
            assert worker.is_alive()
        finally:
            stop.set()
            worker.join(JOB_TIMEOUT_SECONDS)
    assert outcome == [None]  # stopped while waiting: nothing was trained
    (message,) = messages  # said once, however often asked
    assert message.startswith("full gbm model: waiting for the API (POST /train failed with 503: ")


def full_model_mb(model_type: str, rows: int) -> float:
    """The estimated size of a full model of ``model_type`` on ``rows`` rows."""
    params = parse_params(model_type, {}, fast=False)
    return estimate_training_cost(model_type, params, rows, rows).model_mb


def test_background_work_replaces_first_models_pipeline_type_first_one_failure_apart(
    small_stack: SmallStack, tmp_path: Path
) -> None:
    settings = small_stack.settings.model_copy(
        update={
            "logs_dir": tmp_path,
            "pipeline_db_url": f"sqlite:///{tmp_path / 'pipeline.db'}",
            "pipeline_model_type": "gbm",
        }
    )
    ingest(settings, date(2021, 4, 1), SYNTHETIC)  # a store with counts is not filled again
    # An API whose model size limit only a full gbm model breaks: that job fails, for real.
    rows = len(read_records(settings.dataset_path("reference")))
    rf_mb, gbm_mb = full_model_mb("rf", rows), full_model_mb("gbm", rows)
    assert gbm_mb > rf_mb, "the catalogue changed: choose another failing type"
    strict = small_stack.on_server.model_copy(update={"train_max_model_mb": (rf_mb + gbm_mb) / 2})
    messages: list[str] = []
    with serving(strict) as api_url:
        work = BackgroundWork(
            settings, small_stack.registry, api_url, messages.append, ("rf", "gbm")
        )
        work.start()
        assert work.thread is not None
        work.thread.join(3 * JOB_TIMEOUT_SECONDS)
        assert not work.thread.is_alive(), messages
        (rf,) = work.trained
        job = httpx.get(f"{api_url}/train/{rf.job_id}", trust_env=False).json()
    api_log = tmp_path / "regmodel.log"
    assert messages[0].startswith(
        "training full models in the background, one at a time at low priority: gbm, rf "
    )
    assert f"log: {api_log}" in messages[0]
    # The pipeline's type first; its failure keeps its first model and stops nothing.
    assert messages.index("full gbm model: training") < messages.index("full rf model: training")
    assert list(work.failed) == ["gbm"]
    assert work.failed["gbm"].startswith("training job ")
    assert " failed: " in work.failed["gbm"]
    assert "BIKECOUNT_TRAIN_MAX_MODEL_MB" in work.failed["gbm"]  # why, said by the API's job
    assert f"full gbm model failed: {work.failed['gbm']}; the first model stays" in messages
    assert (rf.model_type, rf.version, rf.champion) == ("rf", 2, True)
    assert rf.reason == "replaces a test-mode champion"
    assert {"rmse", "r2"} <= set(rf.metrics)
    assert job["status"] == "succeeded"  # the API's own account of the job
    assert (job["result"]["model_version"], job["result"]["champion"]) == (2, True)
    assert any(m.startswith("full rf model v2 is champion (") for m in messages)
    assert "every full model is trained" not in messages
    assert messages[-1] == (
        f"full models trained: rf; failed: gbm (their first models stay; log: {api_log})"
    )
    registry = small_stack.registry
    (gbm,) = registry.list_versions("gbm")  # the refused run registered nothing
    assert gbm.champion and gbm.test_mode
    champion = next(v for v in registry.list_versions("rf") if v.champion)
    assert champion.version == 2 and not champion.test_mode
    fitted = int(registry.get_run(champion.run_id).data.params["rows_fit"])
    assert fitted > settings.test_sample_rows  # the whole reference set, not the sample
    assert types_with_test_mode_champion(registry, ["rf", "gbm"]) == ["gbm"]


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The RegModel app on a free loopback port, served by uvicorn from a thread."""
    (port,) = helpers.free_ports(1)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="regmodel-api", daemon=True)
    thread.start()
    try:
        helpers.wait_until(
            lambda: server.started or not thread.is_alive(), 60, "the API", interval=0.1
        )
        assert server.started, "the API did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def test_an_empty_store_is_filled_with_recent_days_and_their_forecasts(
    small_stack: SmallStack, tmp_path: Path
) -> None:
    settings = server_settings(small_stack.settings, small_stack.tracking_uri).model_copy(
        update={
            "pipeline_db_url": f"sqlite:///{tmp_path / 'pipeline.db'}",
            "pipeline_recent_days": 2,
            "pipeline_model_type": "gbm",
        }
    )
    recent, coming = recent_days(settings)
    messages: list[str] = []
    with serving(settings) as api_url:
        filled = fill_store(settings, api_url, messages.append)
        assert filled == [*recent, coming]
        assert forecast_days(settings, api_url, [coming]) == 1  # the version that answered
    engine = open_store(settings.pipeline_db_url)
    assert ingested_days(engine, recent[0] - timedelta(days=7), coming) == set(recent)
    counters = len(known_counters(engine))
    for day in filled:  # every hour of every stored counter, by the served first model
        predictions = read_predictions(engine, day, "gbm")
        assert set(predictions["model_version"]) == {1}, day
        assert len(predictions) == 24 * counters, day
    errors = read_table(engine, daily_errors_table)
    assert set(errors["day"]) == set(recent)  # the coming day has no counts to score yet
    assert set(errors["model_version"]) == {1}
    assert messages == [
        f"filling the pipeline store: generated counts of {recent[0]} to {recent[-1]}",
        f"pipeline store filled: 2 days of counts, their forecasts and a forecast of {coming} "
        "(gbm)",
    ]
