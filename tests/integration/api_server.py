"""Real API processes for the integration tests: uvicorn serving an app factory, and MLflow.

Every server runs in its own session (process group) on a free loopback port, with its log in
the test's temporary folder; stopping it stops its whole group. Servers are started first and
waited for together, since MLflow alone takes 15-30 s to come up on a busy machine.

The MLflow command line and process-group handling come from ``mlflow_server.py``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mlflow_server import find_free_port, read_log_tail, server_command, stop_process_group

from bikecount.config import Settings
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records

REGMODEL_APP = "bikecount.api.regmodel:create_app"
CLASSMODEL_APP = "bikecount.api.classmodel:create_app"
STARTUP_TIMEOUT_SECONDS = 90.0
# 8 counters over 3 months: a full-data forest fits in seconds, the test sample has 1,000 rows.
DATA_CONFIG = SynthConfig(start="2020-09-01", months=3, n_counters=8, seed=42)


@dataclass
class ServerProcess:
    """A started server: its URL, its process (leader of its group) and its log file."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    health_path: str = "/health"
    stopped: bool = field(default=False)

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Poll the health URL until it answers 200; fail the test with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited early; its log:\n{read_log_tail(self.log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.25)
        pytest.fail(f"{self.name} not healthy in {timeout:.0f} s:\n{read_log_tail(self.log_path)}")

    def stop(self) -> None:
        if not self.stopped:
            stop_process_group(self.process)
            self.stopped = True

    def log(self) -> str:
        return read_log_tail(self.log_path)


def start_server(
    name: str, command: list[str], cwd: Path, env: Mapping[str, str], port: int
) -> ServerProcess:
    """Start ``command`` in its own session with stdout and stderr in ``cwd/<name>.log``."""
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(name, f"http://127.0.0.1:{port}", process, log_path)


def start_mlflow(root: Path) -> ServerProcess:
    """``mlflow server`` with a SQLite store and artifacts under ``root`` (not yet healthy)."""
    root.mkdir(parents=True, exist_ok=True)
    port = find_free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return start_server("mlflow", server_command(root, port), root, env, port)


def start_api(name: str, app: str, root: Path, env: Mapping[str, str]) -> ServerProcess:
    """``uvicorn --factory <app>`` on a free port, run from ``root`` (not yet healthy)."""
    port = find_free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", app]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    return start_server(name, command, root, env, port)


def api_env(root: Path, tracking_uri: str, **settings: object) -> dict[str, str]:
    """The environment of an API process: ``BIKECOUNT_*`` settings, nothing from the caller's
    own bikecount or MLflow configuration."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BIKECOUNT_", "MLFLOW_"))
    }
    env.update(
        BIKECOUNT_ENV="dev",
        BIKECOUNT_MLFLOW_TRACKING_URI=tracking_uri,
        BIKECOUNT_DATA_DIR=str(root / "data"),
        BIKECOUNT_MLRUNS_DIR=str(root / "mlruns"),
        BIKECOUNT_ARTIFACTS_DIR=str(root / "artifacts"),
        OMP_NUM_THREADS="1",  # two busy cores: native thread pools only fight each other
    )
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


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll ``GET /train/{job_id}`` until the job has finished; return its last state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/train/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"training job {job_id} still running after {timeout:.0f} s")
