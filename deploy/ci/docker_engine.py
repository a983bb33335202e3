"""A Docker engine for the container tests and CI scripts, and the compose command that drives it.

When an engine already answers (``docker info``), it is used as it is. Otherwise ``dockerd``
(Debian's ``docker.io``; ``make system-deps`` installs it) is started here, as root, in a
session of its own with its log in the test's folder, and stopped when the tests end, with the
containerd it started. Its images stay in ``/var/lib/docker``: that is the layer cache that
makes a second run fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT = 90
STOP_TIMEOUT = 60
INSTALL_HINT = "apt-get install docker.io docker-compose (make system-deps does)"


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    return done.returncode == 0


def compose_command() -> list[str] | None:
    """``docker compose`` (v2), else ``docker-compose`` (v1, Debian bookworm's), else None."""
    if shutil.which("docker") is not None:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if done.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@contextmanager
def docker_engine(log_path: Path) -> Iterator[None]:
    """An engine for the duration of the block: the running one, or one started here."""
    if engine_answers():
        yield
        return
    if shutil.which("dockerd") is None:
        raise RuntimeError(f"no Docker engine: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise RuntimeError("no Docker engine runs, and only root can start dockerd here")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not engine_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dockerd did not start:\n{tail}")
            time.sleep(1)
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)  # stops its containers and its containerd too
        try:
            daemon.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
