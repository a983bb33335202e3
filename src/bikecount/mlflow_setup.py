"""MLflow's process-wide setup: its loggers, its request bounds, its global URIs, and URIs fit
for a message.

Everything here acts on MLflow's global state (loggers, ``os.environ``, the fluent API's URIs),
so it is called at a process's start, before any thread, or by :class:`~bikecount.registry.Registry`
where MLflow gives no other way.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

import mlflow

from bikecount.config import Settings


def quiet_mlflow() -> None:
    """Silence MLflow's warning on every cloudpickle save and load: the format is a deliberate
    choice (the models hold bikecount's own transformers). The one place that says so."""
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


def is_remote(tracking_uri: str) -> bool:
    """Whether the URI names a tracking server (rather than a local store)."""
    return tracking_uri.startswith(("http://", "https://"))


def bound_mlflow_requests(settings: Settings) -> None:
    """Bound every request of MLflow's client: its defaults (7 retries with a doubling backoff,
    120 s timeouts) keep a call to a dead server waiting for minutes. MLflow reads these
    environment variables at each request; ones already set (``MLFLOW_HTTP_REQUEST_*``) win.

    Call it once at a process's start (the CLI, an API's ``create_app``, a DAG task), before any
    thread: a thread that reads the whole environment (a subprocess's copy, the proxy lookup of
    every HTTP request) while another writes it fails with "dictionary changed size during
    iteration".
    """
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_seconds)
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_request_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def point_mlflow_at(tracking_uri: str, registry_uri: str) -> None:
    """Set MLflow's global tracking and registry URIs, each only if it names another store.

    MLflow copies them into ``os.environ`` (for its child processes), the registry URI at every
    call. Pointed once at a process's start (``Registry.use_for_runs`` in an API's lifespan), the
    calls from request and training threads then write nothing: see
    :func:`bound_mlflow_requests` for the race a write from a thread starts.
    """
    if mlflow.get_tracking_uri() != tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_registry_uri() != registry_uri:
        mlflow.set_registry_uri(registry_uri)


def shown_uri(tracking_uri: str) -> str:
    """A tracking URI fit for a message: scheme, host and port, no credentials."""
    if not is_remote(tracking_uri):
        return tracking_uri
    parts = urlsplit(tracking_uri)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
