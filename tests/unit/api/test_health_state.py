"""``/health`` answers from MLflow's last probed state, refreshed by a background watch."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from bikecount.api.deps import ApiState, attach_state
from bikecount.api.health_state import MlflowWatch, watching_mlflow
from bikecount.api.model_cache import ModelCache
from bikecount.api.routes import health
from bikecount.config import Settings
from bikecount.registry import Registry
from helpers import wait_until

WAIT_SECONDS = 10.0


def test_the_watch_probes_every_interval_until_stopped() -> None:
    calls: list[float] = []
    watch = MlflowWatch(lambda: calls.append(time.monotonic()), interval_seconds=0.01)

    watch.start()
    wait_until(lambda: len(calls) >= 3, WAIT_SECONDS, "probed three times", interval=0.005)
    watch.stop()
    stopped_at = len(calls)
    time.sleep(0.05)  # five intervals: a watch still running would probe in them

    assert len(calls) == stopped_at
    assert not any(t.name == "mlflow-watch" and t.is_alive() for t in threading.enumerate())


def test_a_probe_that_raises_does_not_end_the_watch() -> None:
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    watch = MlflowWatch(check, interval_seconds=0.01)
    watch.start()
    wait_until(lambda: len(calls) >= 3, WAIT_SECONDS, "probed three times", interval=0.005)
    watch.stop()


def health_app(probe: Callable[[], bool]) -> tuple[FastAPI, ModelCache]:
    """An app serving only ``/health``, its cache probing MLflow with ``probe``."""
    settings = Settings(_env_file=None, mlflow_tracking_uri="http://127.0.0.1:9")
    registry = Registry(settings)
    cache = ModelCache(
        settings,
        resolve=lambda model_type, metric: 1,
        load=lambda model_type, version: None,  # never called: no /predict here
        probe=probe,
    )
    app = FastAPI()
    attach_state(app, ApiState(settings, registry, cache, ("rf",)))
    app.include_router(health.router)
    return app, cache


def test_health_answers_from_the_last_probe_without_probing_again() -> None:
    answers = [True]
    probes: list[bool] = []

    def probe() -> bool:
        probes.append(answers[-1])
        return answers[-1]

    app, cache = health_app(probe)
    client = TestClient(app)

    first = client.get("/health").json()  # never probed (no lifespan here): it asks once
    answers.append(False)
    again = [client.get("/health").json()["status"] for _ in range(5)]
    cache.check_mlflow()  # what the background watch does
    after = client.get("/health").json()

    assert first["status"] == "ok" and first["mlflow"]["reachable"] is True
    assert again == ["ok"] * 5 and probes == [True, False]
    assert after["status"] == "degraded" and after["mlflow"]["reachable"] is False
    assert set(after) == {"status", "mlflow", "models", "uptime_seconds", "version"}


def test_an_app_probes_before_serving_and_stops_the_watch_at_shutdown() -> None:
    probes: list[bool] = []
    app, cache = health_app(lambda: probes.append(True) or True)
    app.router.lifespan_context = watching_mlflow_only

    with TestClient(app) as client:
        assert probes == [True]  # before the first request
        assert client.get("/health").json()["status"] == "ok"
        assert any(t.name == "mlflow-watch" for t in threading.enumerate())
    assert not any(t.name == "mlflow-watch" and t.is_alive() for t in threading.enumerate())


@asynccontextmanager
async def watching_mlflow_only(app: FastAPI) -> AsyncIterator[None]:
    async with watching_mlflow(app.state.bikecount):
        yield
