"""Prometheus metrics: names and labels, the drift gauges, route templates, the hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bikecount.api.jobs import TrainingJobs
from bikecount.api.model_cache import ModelCache
from bikecount.api.regmodel import create_app
from bikecount.config import Settings
from bikecount.monitoring import metrics
from bikecount.registry import Registry
from bikecount.train import TrainRequest

EXPECTED = {
    "bikecount_http_requests": ("counter", {"route", "method", "status"}),
    "bikecount_http_request_duration_seconds": ("histogram", {"route", "method", "status"}),
    "bikecount_predictions": ("counter", {"model_type"}),
    "bikecount_prediction_batch_size": ("histogram", {"model_type"}),
    "bikecount_champion_version": ("gauge", {"model_type"}),
    "bikecount_champion_metric": ("gauge", {"model_type", "metric"}),
    "bikecount_training_runs": ("counter", {"model_type", "status"}),
    "bikecount_training_duration_seconds": ("histogram", {"model_type", "status"}),
    "bikecount_drift_share": ("gauge", set()),
    "bikecount_drift_detected": ("gauge", set()),
    "bikecount_drift_runs": ("counter", {"detected"}),
    "bikecount_drift_column_detected": ("gauge", {"column"}),
}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The RegModel app without its lifespan: no MLflow, no preloading."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path / "data", mlflow_tracking_uri="sqlite:///:memory:"
    )
    return TestClient(create_app(settings))


@pytest.mark.parametrize("collector", list(EXPECTED))
def test_metric_names_types_and_labels(collector: str) -> None:
    kind, labels = EXPECTED[collector]
    metric = REGISTRY._names_to_collectors[collector + ("_total" if kind == "counter" else "")]
    assert metric._type == kind
    assert set(metric._labelnames) == labels


def test_record_drift_sets_the_gauges_and_counts_runs() -> None:
    before = value("bikecount_drift_runs_total", detected="true")
    metrics.record_drift(0.42, True)
    assert value("bikecount_drift_share") == pytest.approx(0.42)
    assert value("bikecount_drift_detected") == 1.0
    metrics.record_drift(0.0, False)
    assert value("bikecount_drift_detected") == 0.0
    assert value("bikecount_drift_runs_total", detected="true") == before + 1


def test_record_drift_replaces_the_column_flags() -> None:
    metrics.record_drift(0.5, True, {"hour": True, "counter": False})
    assert value("bikecount_drift_column_detected", column="hour") == 1.0
    assert value("bikecount_drift_column_detected", column="counter") == 0.0
    metrics.record_drift(0.0, False, {"month": False})
    assert REGISTRY.get_sample_value("bikecount_drift_column_detected", {"column": "hour"}) is None


def test_requests_are_labelled_by_route_template(client: TestClient) -> None:
    labels = {"route": "/train/{job_id}", "method": "GET", "status": "404"}
    before = value("bikecount_http_requests_total", **labels)
    for job_id in ("a", "b", "c"):
        assert client.get(f"/train/{job_id}").status_code == 404
    assert value("bikecount_http_requests_total", **labels) == before + 3
    assert value("bikecount_http_request_duration_seconds_count", **labels) >= 3
    assert value("bikecount_http_requests_total", route="/train/a", method="GET", status="404") == 0


def test_unknown_paths_share_one_label_and_metrics_are_not_counted(client: TestClient) -> None:
    labels = {"route": "<unmatched>", "method": "GET", "status": "404"}
    before = value("bikecount_http_requests_total", **labels)
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    assert value("bikecount_http_requests_total", **labels) == before + 2
    assert client.get("/openapi.json").status_code == 200
    assert value("bikecount_http_requests_total", route="/openapi.json", method="GET", status="200")
    client.get("/metrics")
    assert not value("bikecount_http_requests_total", route="/metrics", method="GET", status="200")


def test_metrics_endpoint_serves_the_text_format(client: TestClient) -> None:
    metrics.record_drift(0.25, True)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert set(EXPECTED) <= families
    assert "bikecount_drift_share 0.25" in response.text


def test_invalid_predictions_count_as_422_not_as_predictions(client: TestClient) -> None:
    before = value("bikecount_predictions_total", model_type="rf")
    response = client.post("/predict", json={"records": [{"bad": 1}], "model_type": "rf"})
    assert response.status_code == 422
    assert value("bikecount_http_requests_total", route="/predict", method="POST", status="422")
    assert value("bikecount_predictions_total", model_type="rf") == before


def test_new_champion_calls_the_hook_once() -> None:
    seen: list[tuple[str, int]] = []
    champion = {"rf": 1}
    cache = ModelCache(
        Settings(_env_file=None, model_check_seconds=0),
        resolve=lambda model_type, metric: champion[model_type],
        load=lambda model_type, version: object(),
        probe=lambda: True,
        on_champion=lambda model_type, version: seen.append((model_type, version)),
    )
    cache.get("rf")
    cache.get("rf")
    cache.get("rf", "r2")  # a version picked by metric is not the champion
    champion["rf"] = 2
    cache.get("rf")
    assert seen == [("rf", 1), ("rf", 2)]


def test_record_champion_sets_version_and_metrics() -> None:
    metrics.record_champion("nn", 7, {"r2": 0.81, "rmse": 12.5})
    assert value("bikecount_champion_version", model_type="nn") == 7
    assert value("bikecount_champion_metric", model_type="nn", metric="r2") == pytest.approx(0.81)


@pytest.mark.parametrize("fails", [False, True])
def test_training_jobs_count_runs_and_durations(fails: bool) -> None:
    def run(
        request: TrainRequest, settings: Settings, registry: Registry, **callbacks: object
    ) -> object:
        if fails:
            raise RuntimeError("boom")
        return object()

    status = "failed" if fails else "succeeded"
    started = value("bikecount_training_runs_total", model_type="rf", status="started")
    ended = value("bikecount_training_runs_total", model_type="rf", status=status)
    settings = Settings(_env_file=None)
    jobs = TrainingJobs(settings, Registry(settings), run=run)  # type: ignore[arg-type]
    request = TrainRequest(model_type="rf", data_source="reference", env="dev", hyperparams={})
    assert jobs.submit(request).done.wait(10)
    assert value("bikecount_training_runs_total", model_type="rf", status="started") == started + 1
    assert value("bikecount_training_runs_total", model_type="rf", status=status) == ended + 1
    labels = {"model_type": "rf", "status": status}
    assert value("bikecount_training_duration_seconds_count", **labels) >= 1


RECORD_IN_A_WORKER = """
from bikecount.monitoring import metrics
metrics.record_request("/predict", "POST", 200, 0.01)
metrics.record_drift({share}, True)
"""
RENDER = """
import sys
from bikecount.monitoring.metrics import render_metrics
sys.stdout.write(render_metrics()[0].decode())
"""


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for share in (0.25, 0.75):  # two workers, one after the other
        code = RECORD_IN_A_WORKER.format(share=share)
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    text = subprocess.run(
        [sys.executable, "-c", RENDER], env=env, check=True, capture_output=True, text=True
    ).stdout
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("method", "POST"), ("route", "/predict"), ("status", "200"))
    assert samples[("bikecount_http_requests_total", labels)] == 2
    assert samples[("bikecount_drift_share", ())] == 0.75  # the last run's, not a sum
