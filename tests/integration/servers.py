"""Real servers for the integration tests, started as ``bikecount up`` starts them.

Each server is a :class:`~bikecount.stack.services.ServiceSpec` of the product (its command line
and environment, from ``bikecount.stack.services``), with the test's settings added to its
environment and the test's temporary folder as its working directory (so no ``.env`` of the
developer's is read). It runs under the stack's own
:class:`~bikecount.stack.processes.ProcessManager`: its own session, its output in
``<folder>/<name>.log``, and the stack's health wait and stop (process group, then SIGKILL).

Servers are started first and waited for together, since an API takes 10-20 s to come up on a
busy machine. The session's one MLflow server and each module's place on it (``Tracking``) are
fixtures in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

import helpers
from bikecount.config import Settings
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.registry import CHAMPION
from bikecount.stack.processes import ProcessManager, RunningService, ServiceFailedError
from bikecount.stack.services import (
    CLASSMODEL_APP,
    REGMODEL_APP,
    ServiceSpec,
    api_service,
    mlflow_service,
)

__all__ = ["CLASSMODEL_APP", "REGMODEL_APP"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 90.0
LOG_TAIL_CHARS = 4000
# 8 counters over 3 months: a full-data forest fits in seconds, the test sample has 1,000 rows.
DATA_CONFIG = SynthConfig(start="2020-09-01", months=3, n_counters=8, seed=42)
# How many servers of each kind the harness started in this session (printed in the summary).
STARTED: Counter[str] = Counter()


@dataclass
class ServerProcess:
    """A started server: its spec, and the stack's manager that runs it."""

    spec: ServiceSpec
    manager: ProcessManager
    service: RunningService

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.service.process

    @property
    def log_path(self) -> Path:
        return self.service.log_path

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """The stack's own health wait; a failure fails the test with the server's log."""
        try:
            self.manager.wait_healthy(self.service, timeout)
        except ServiceFailedError as exc:
            pytest.fail(f"{exc}; its log:\n{self.log()}")

    def stop(self) -> None:
        """Stop the server's process group (idempotent: a killed server is simply reaped)."""
        self.manager.stop_all()

    def log(self) -> str:
        """The end of the server's log, once the stack's reader has written what it read."""
        if self.service.reader is not None and self.service.process.poll() is not None:
            self.service.reader.join(timeout=2)
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def start(spec: ServiceSpec, folder: Path, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Start ``spec`` from ``folder`` with ``env`` over its own environment (not yet healthy)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = replace(spec, env={**spec.env, **(env or {})}, cwd=folder)
    manager = ProcessManager(folder)
    STARTED[spec.name.split("-")[0]] += 1
    return ServerProcess(spec, manager, manager.start(spec))


def start_command(
    name: str,
    command: Sequence[str],
    folder: Path,
    port: int,
    health_path: str,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """A server that is not one of the stack's services (an emulator, a test's Prometheus)."""
    spec = ServiceSpec(
        name, tuple(command), HOST, port, "--port", "a test", health_path=health_path
    )
    return start(spec, folder, env)


def start_mlflow(root: Path) -> ServerProcess:
    """The stack's MLflow server: SQLite store and ``file://`` artifacts under ``root``."""
    settings = Settings(
        _env_file=None, mlruns_dir=root / "mlruns", artifacts_dir=root / "artifacts"
    )
    return start(mlflow_service(settings, HOST, helpers.free_port()), root)


def start_api(name: str, app: str, root: Path, env: Mapping[str, str]) -> ServerProcess:
    """A bikecount API (``app``) as the stack serves it, run from ``root`` with ``env``."""
    spec = api_service(
        name,
        app,
        host=HOST,
        port=helpers.free_port(),
        tracking_uri=env["BIKECOUNT_MLFLOW_TRACKING_URI"],
        reload=False,
    )
    return start(spec, root, env)


@dataclass
class Tracking:
    """A test module's place on an MLflow server: its URL and the prefix of the module's names
    (registered models ``<prefix>-rf``..., experiments ``<prefix>-dev``...)."""

    url: str
    prefix: str = "bikecount"

    @cached_property
    def settings(self) -> Settings:
        return Settings(_env_file=None, mlflow_tracking_uri=self.url, mlflow_prefix=self.prefix)

    @cached_property
    def client(self) -> MlflowClient:
        return MlflowClient(self.url, self.url)

    def name(self, what: str) -> str:
        """The module's MLflow name of a model type or an experiment (``rf``, ``dev``...)."""
        return self.settings.mlflow_name(what)

    def champion(self, model_type: str) -> int:
        version = self.client.get_model_version_by_alias(self.name(model_type), CHAMPION)
        return int(version.version)

    def experiment_id(self, what: str = "dev") -> str | None:
        experiment = self.client.get_experiment_by_name(self.name(what))
        return None if experiment is None else experiment.experiment_id

    def env(self) -> dict[str, str]:
        """The variables that point a bikecount process here."""
        return {
            "BIKECOUNT_MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_URI": self.url,
            "BIKECOUNT_MLFLOW_PREFIX": self.prefix,
        }


def api_env(root: Path, tracking: Tracking | str, **settings: object) -> dict[str, str]:
    """The environment of an API process: its folders under ``root``, its MLflow place, and
    ``settings`` as ``BIKECOUNT_*`` variables.

    The session's environment carries no ``BIKECOUNT_*`` or ``MLFLOW_*`` variable of the
    developer's (see the root ``conftest.py``).
    """
    place = tracking if isinstance(tracking, Tracking) else Tracking(tracking)
    env = {
        **place.env(),
        "BIKECOUNT_ENV": "dev",
        "BIKECOUNT_DATA_DIR": str(root / "data"),
        "BIKECOUNT_MLRUNS_DIR": str(root / "mlruns"),
        "BIKECOUNT_ARTIFACTS_DIR": str(root / "artifacts"),
    }
    env.update({f"BIKECOUNT_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def write_test_data(data_dir: Path) -> Settings:
    """Write reference, current and test_sample data sets from the synthetic generator."""
    settings = Settings(_env_file=None, data_dir=data_dir)
    write_datasets(generate_records(DATA_CONFIG), settings)
    return settings


@contextlib.contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Wait until every server is healthy; stop them all on exit, whatever happened."""
    try:
        for server in servers:
            server.wait_healthy()
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()


@contextlib.contextmanager
def in_thread(server: socketserver.BaseServer) -> Iterator[None]:
    """Run a test's own HTTP server (a stand-in, a receiver) in a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Receiver(ThreadingHTTPServer):
    """Records every JSON body POSTed to it, by path; answers 200 as Slack and Discord do (a
    stand-in for the receivers Alertmanager delivers to)."""

    daemon_threads = True
    received: dict[str, list[dict[str, Any]]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.setdefault(self.path, []).append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.received = {}
    with in_thread(server):
        yield server


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET url`` answers 200 (no proxy: every server here is on loopback)."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def train_first_model(
    api: ServerProcess, api_key: str | None = None, model_type: str = "gbm"
) -> int:
    """Train a test-mode model through ``POST /train`` (the champion of an empty registry);
    its version."""
    headers = {"X-API-Key": api_key} if api_key else {}
    body = {"model_type": model_type, "data_source": "reference", "test_mode": True}
    trained = httpx.post(f"{api.url}/train", json=body, headers=headers, timeout=180)
    assert trained.status_code == 200, trained.text
    return int(trained.json()["model_version"])


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll ``GET /train/{job_id}`` until the job has finished; return its last state."""
    job: dict = {}

    def finished() -> bool:
        job.update(client.get(f"/train/{job_id}").json())
        return job["status"] in ("succeeded", "failed")

    helpers.wait_until(finished, timeout, f"finished training job {job_id}", lambda: str(job), 0.25)
    return job
