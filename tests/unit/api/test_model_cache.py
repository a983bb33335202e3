"""The API's model cache (``bikecount.api.model_cache``) with a stand-in registry (no MLflow, no
model files), so that its rules (re-check interval, fallback when MLflow is down, one load per
model under concurrency) are checked in milliseconds; the integration tests run them for real.
"""

from __future__ import annotations

import threading
import time

import pytest

from bikecount.api.errors import ModelUnavailableError, NoModelError
from bikecount.api.model_cache import ModelCache
from bikecount.config import Settings
from bikecount.registry import ModelNotFoundError


class FakeRegistry:
    """Stands in for MLflow: a champion per type that tests change, and a switch to go down."""

    def __init__(self) -> None:
        self.champions: dict[str, int] = {"rf": 1}
        self.up = True
        self.resolved = 0
        self.loaded: list[tuple[str, int]] = []

    def resolve(self, model_type: str, metric: str | None) -> int:
        self.resolved += 1
        if model_type not in self.champions:
            raise ModelNotFoundError(f"bikecount-{model_type} has no champion yet")
        return self.champions[model_type]

    def load(self, model_type: str, version: int) -> object:
        time.sleep(0.05)  # long enough for concurrent requests to overlap
        self.loaded.append((model_type, version))
        return f"{model_type}-v{version}"


def make_cache(registry: FakeRegistry, check_seconds: float) -> ModelCache:
    settings = Settings(_env_file=None, model_check_seconds=check_seconds)
    return ModelCache(
        settings, resolve=registry.resolve, load=registry.load, probe=lambda: registry.up
    )


def test_champion_is_rechecked_only_after_the_interval() -> None:
    registry = FakeRegistry()
    cache = make_cache(registry, check_seconds=3600)
    assert cache.get("rf").model == "rf-v1"
    registry.champions["rf"] = 2
    assert cache.get("rf").version == 1 and registry.resolved == 1
    cache.invalidate("rf")
    assert cache.get("rf").version == 2
    assert cache.champion_versions(["rf", "gbm"]) == {"rf": 2, "gbm": None}


def test_cached_model_serves_while_mlflow_is_down() -> None:
    registry = FakeRegistry()
    cache = make_cache(registry, check_seconds=0)
    cache.get("rf")
    registry.up = False
    assert cache.get("rf").model == "rf-v1"
    assert cache.mlflow_reachable is False
    with pytest.raises(ModelUnavailableError):
        cache.get("gbm")
    with pytest.raises(ModelUnavailableError):
        cache.reload(["rf"])
    assert cache.get("rf").version == 1, "a refused reload keeps the cache"


def test_missing_champion_says_how_to_train_one() -> None:
    with pytest.raises(NoModelError, match="POST /train"):
        make_cache(FakeRegistry(), check_seconds=0).get("nn")


def test_concurrent_requests_load_a_model_once() -> None:
    registry = FakeRegistry()
    cache = make_cache(registry, check_seconds=0)
    threads = [threading.Thread(target=cache.get, args=("rf",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.loaded == [("rf", 1)]


def test_peek_serves_only_what_get_would_without_asking_mlflow() -> None:
    registry = FakeRegistry()
    now = [0.0]
    cache = ModelCache(
        Settings(_env_file=None, model_check_seconds=60),
        resolve=registry.resolve,
        load=registry.load,
        probe=lambda: registry.up,
        clock=lambda: now[0],
    )
    assert cache.peek("rf") is None  # nothing loaded: the caller must get() it
    assert registry.loaded == [] and registry.resolved == 0
    served = cache.get("rf")
    peeked = cache.peek("rf")
    assert peeked is not None and (peeked.version, peeked.model) == (1, served.model)
    assert cache.peek("rf", "r2") is None  # a metric's version is another selection
    now[0] = 60.0  # due for the re-check: only get() asks the registry
    assert cache.peek("rf") is None and registry.resolved == 1
    cache.get("rf")
    assert cache.peek("rf") is not None
    cache.invalidate("rf")
    assert cache.peek("rf") is None
