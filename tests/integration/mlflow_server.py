"""A real MLflow tracking server in a subprocess, for the integration tests.

The server gets its own SQLite store and artifact folder under a temporary directory and a free
port on the loopback interface. It runs in its own session (process group), so stopping it also
stops the uvicorn worker it spawns.

Import the fixture into a test module (``from mlflow_server import mlflow_server``): it is
module-scoped, so each module gets a fresh registry (its own ``champion`` aliases).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_CHARS = 4000


def find_free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(root: Path, port: int) -> list[str]:
    """The ``mlflow server`` command line: SQLite backend, proxied artifacts, one worker."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]


def read_log_tail(log_path: Path) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text[-LOG_TAIL_CHARS:]


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Poll ``GET /health`` until it answers 200; fail with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mlflow server exited with code {process.returncode} before answering "
                f"/health; its log:\n{read_log_tail(log_path)}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    pytest.fail(
        f"mlflow server did not answer {url}/health within {timeout:.0f} s; its log:\n"
        f"{read_log_tail(log_path)}"
    )


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # The worker may outlive the leader for a moment: make sure nothing of the group remains.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def run_mlflow_server(root: Path, timeout: float = STARTUP_TIMEOUT_SECONDS) -> Iterator[str]:
    """Start ``mlflow server`` with its stores under ``root``; yield its URL; stop it.

    Args:
        root: an empty directory for the SQLite store, the artifacts and ``server.log``.
        timeout: seconds to wait for ``/health`` before failing the test with the log.

    Yields:
        The server's base URL, e.g. ``http://127.0.0.1:54321``.
    """
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    # The server's background job runner is not needed by these tests: one process fewer.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(root, port),
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(url, process, log_path, timeout)
        yield url
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real MLflow tracking server, fresh for each test module."""
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as url:
        yield url
