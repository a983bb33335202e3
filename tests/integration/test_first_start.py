"""The first start's background work on a real MLflow server and API: the pipeline store is
filled, a full model trains as a job of the API, becomes champion, is served without a restart,
and the stored days are forecast again by it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from servers import DATA_CONFIG, Tracking, api_env, running, start_api

import helpers
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import generate_records
from bikecount.pipeline.store import daily_errors as daily_errors_table
from bikecount.pipeline.store import last_day, read_predictions, read_table
from bikecount.pipeline.store_engine import open_store
from bikecount.registry import Registry
from bikecount.stack.background import BackgroundWork
from bikecount.stack.first_start import bootstrap, server_settings
from bikecount.stack.services import REGMODEL_APP

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_background_work_fills_the_store_and_a_full_model_takes_over(
    tmp_path: Path, tracking: Tracking
) -> None:
    settings = helpers.local_settings(
        tmp_path,
        mlflow_prefix=tracking.prefix,
        pipeline_recent_days=5,
        model_check_seconds=1,
        pipeline_model_type="gbm",  # the one type trained here: the store is forecast with it
    )
    settings.logs_dir.mkdir()
    write_datasets(generate_records(DATA_CONFIG), settings)
    messages: list[str] = []
    on_server = server_settings(settings, tracking.url)
    registry = Registry(on_server)
    bootstrap(on_server, registry, model_types=("gbm",))
    env = api_env(tmp_path, tracking, model_check_seconds=1)
    with running(start_api("regmodel", REGMODEL_APP, tmp_path, env)) as (api,):
        work = BackgroundWork(settings, registry, api.url, messages.append, ("gbm",))
        work.start()
        assert work.thread is not None
        work.thread.join(timeout=400)
        assert not work.thread.is_alive(), messages
        assert work.failed == {}, (work.failed, api.log())
        (full,) = work.trained
        job = httpx.get(f"{api.url}/train/{full.job_id}", trust_env=False).json()
    assert job["status"] == "succeeded", job  # a job of the API, as any client's
    assert job["result"]["model_version"] == full.version == 2
    versions = registry.list_versions("gbm")
    champion = next(v for v in versions if v.champion)
    assert champion.version == 2 and not champion.test_mode
    engine = open_store(settings.pipeline_db_url)
    last = last_day(engine)
    assert last is not None
    coming = read_predictions(engine, last.fromordinal(last.toordinal() + 1), "gbm")
    assert set(coming["model_version"]) == {1, 2}  # the first model's forecast stays
    assert set(read_table(engine, daily_errors_table)["model_version"]) == {1, 2}
    text = "\n".join(messages)
    assert "pipeline store filled: 5 days" in text
    assert "full gbm model v2 is champion" in text
    assert "forecast again by gbm v2" in text and "now served by the API" in text
