"""Prometheus metrics of the APIs, defined once: HTTP, predictions, champions, training, drift.

Every metric lives in :data:`REGISTRY`'s process (prometheus-client's default registry), so the
route that serves ``/metrics`` and the code that records values share one definition. With
several uvicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder, wiped before start):
:func:`render_metrics` then aggregates every worker's files. Without it, run one worker (the
stack does), or each scrape would see one worker's numbers at random.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a cached one-record prediction (ms) to a large batch or a cold model load (s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
TRAINING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600)

HTTP_REQUESTS = Counter(
    "bikecount_http_requests",
    "HTTP requests answered, by route template (not raw path), method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "bikecount_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "bikecount_predictions",
    "Predictions served (one per record), by model type.",
    ["model_type"],
)
PREDICTION_BATCH_SIZE = Histogram(
    "bikecount_prediction_batch_size",
    "Records per successful prediction request, by model type.",
    ["model_type"],
    buckets=BATCH_BUCKETS,
)
# Gauges: "mostrecent" in multiprocess mode, so every worker's last write wins (not a sum).
CHAMPION_VERSION = Gauge(
    "bikecount_champion_version",
    "Registered version of the champion loaded by the API, by model type.",
    ["model_type"],
    multiprocess_mode="mostrecent",
)
CHAMPION_METRIC = Gauge(
    "bikecount_champion_metric",
    "Holdout metric of the loaded champion (r2, rmse, f1_score, ...), by model type.",
    ["model_type", "metric"],
    multiprocess_mode="mostrecent",
)
TRAINING_RUNS = Counter(
    "bikecount_training_runs",
    "Training runs by model type and status (started, succeeded, failed).",
    ["model_type", "status"],
)
TRAINING_DURATION = Histogram(
    "bikecount_training_duration_seconds",
    "Wall time of finished training runs, by model type and final status.",
    ["model_type", "status"],
    buckets=TRAINING_BUCKETS,
)
DRIFT_SHARE = Gauge(
    "bikecount_drift_share",
    "Share of drifted columns in the last drift run (0 to 1).",
    multiprocess_mode="mostrecent",
)
DRIFT_DETECTED = Gauge(
    "bikecount_drift_detected",
    "1 when the last drift run detected dataset drift, else 0.",
    multiprocess_mode="mostrecent",
)
# One value per input column of the model: a bounded, known set of labels.
DRIFT_COLUMN_DETECTED = Gauge(
    "bikecount_drift_column_detected",
    "1 when the last drift run found this column drifted, else 0.",
    ["column"],
    multiprocess_mode="mostrecent",
)
DRIFT_RUNS = Counter(
    "bikecount_drift_runs",
    "Drift runs completed, by outcome (detected: true or false).",
    ["detected"],
)


def record_drift(share: float, detected: bool, columns: Mapping[str, bool] | None = None) -> None:
    """Record the outcome of one drift run.

    Args:
        share: share of drifted columns, 0 to 1.
        detected: whether the run concluded that the data set drifted.
        columns: optionally, whether each column drifted (for the "drifted columns" panel).
    """
    if columns is not None:
        DRIFT_COLUMN_DETECTED.clear()  # columns of an earlier run must not linger
        for column, drifted in columns.items():
            DRIFT_COLUMN_DETECTED.labels(column=column).set(1 if drifted else 0)
    DRIFT_SHARE.set(share)
    DRIFT_DETECTED.set(1 if detected else 0)
    DRIFT_RUNS.labels(detected=str(detected).lower()).inc()


def record_prediction(model_type: str, count: int) -> None:
    """Count one successful prediction request of ``count`` records."""
    PREDICTIONS.labels(model_type=model_type).inc(count)
    PREDICTION_BATCH_SIZE.labels(model_type=model_type).observe(count)


def record_champion(model_type: str, version: int, metrics: dict[str, float]) -> None:
    """Set the champion gauges of a model type: its version and its holdout metrics."""
    CHAMPION_VERSION.labels(model_type=model_type).set(version)
    for name, value in metrics.items():
        CHAMPION_METRIC.labels(model_type=model_type, metric=name).set(value)


def record_training_started(model_type: str) -> None:
    TRAINING_RUNS.labels(model_type=model_type, status="started").inc()


def record_training_finished(model_type: str, succeeded: bool, seconds: float) -> None:
    """Count a finished training run and observe its duration under its final status."""
    status = "succeeded" if succeeded else "failed"
    TRAINING_RUNS.labels(model_type=model_type, status=status).inc()
    TRAINING_DURATION.labels(model_type=model_type, status=status).observe(seconds)


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request and observe its latency."""
    labels = {"route": route, "method": method, "status": str(status)}
    HTTP_REQUESTS.labels(**labels).inc()
    HTTP_LATENCY.labels(**labels).observe(seconds)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type; every worker's values in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess  # only valid when the folder is set

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
