"""Child processes of the stack: start them, stream and keep their logs, wait for their health
checks, watch them, and stop them all, grandchildren included.

Each child runs in a session (and process group) of its own, so that a terminal's Ctrl-C reaches
only ``bikecount up``, which then stops every group in order: MLflow and ``uvicorn --reload`` both
spawn children of their own, and signalling the group reaches them too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bikecount.stack.services import ServiceSpec

logger = logging.getLogger(__name__)

LineCallback = Callable[[str, str], None]
TAIL_LINES = 30


PROC = Path("/proc")


@dataclass(frozen=True)
class Identity:
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    started: int


def _read_stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent pid, process group, state, start time) of a process, from ``/proc``."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2]), fields[0], int(fields[19])


def _process_table() -> dict[int, tuple[int, int, str, int]]:
    table = {}
    for entry in PROC.glob("[0-9]*"):
        stat = _read_stat(int(entry.name))
        if stat is not None:
            table[int(entry.name)] = stat
    return table


def descendants(pid: int) -> list[Identity]:
    """A process and all its descendants (empty where there is no ``/proc``)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in table:
            found.append(Identity(current, table[current][3]))
            todo.extend(children.get(current, []))
    return found


def alive(identities: list[Identity]) -> list[Identity]:
    """Those of ``identities`` still running (zombies count as gone: they hold no resources)."""
    left = []
    for identity in identities:
        stat = _read_stat(identity.pid)
        if stat is not None and stat[3] == identity.started and stat[2] != "Z":
            left.append(identity)
    return left


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group ``pgid``."""
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(pg == pgid and state != "Z" for _, pg, state, _ in _process_table().values())


class StackError(RuntimeError):
    """The stack could not start or keep running; the message says why and what to do."""


class ServiceFailedError(StackError):
    """A service died or never answered its health check; ``log_tail`` holds its last lines."""

    def __init__(self, service: str, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.service = service
        self.log_tail = log_tail


@contextmanager
def handling_stop_signals(handler: Callable[..., Any] | int) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with ``handler`` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class RunningService:
    """A started service: its process, its log file and the last lines it wrote."""

    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def log_tail(self) -> list[str]:
        """The last lines of the log, once the reader has caught up (briefly waited for)."""
        if self.reader is not None and self.process.poll() is not None:
            self.reader.join(timeout=2)
        return list(self.tail)


class ProcessManager:
    """Starts services as process groups and stops them all on exit (a context manager).

    Args:
        logs_dir: where ``<service>.log`` files are written (truncated at each start).
        on_line: called with (service, line) for every line a child writes, from reader threads.
        grace_seconds: how long a stopped group may take before it is killed.
    """

    def __init__(
        self, logs_dir: Path, on_line: LineCallback | None = None, grace_seconds: float = 10.0
    ) -> None:
        self.logs_dir = logs_dir
        self.on_line = on_line
        self.grace_seconds = grace_seconds
        self.services: list[RunningService] = []

    def __enter__(self) -> ProcessManager:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, spec: ServiceSpec) -> RunningService:
        """Start ``spec`` in a new session with its output piped to the log and ``on_line``."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        logger.info("starting %s: %s", spec.name, " ".join(spec.command))
        process = subprocess.Popen(
            spec.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = RunningService(spec, process, self.logs_dir / f"{spec.name}.log")
        self.services.append(service)
        service.reader = threading.Thread(
            target=self._pump, args=(service,), name=f"log-{spec.name}", daemon=True
        )
        service.reader.start()
        return service

    def _pump(self, service: RunningService) -> None:
        # One thread per child: copy each line to its log file, the tail and the callback.
        assert service.process.stdout is not None
        with service.log_path.open("w", encoding="utf-8") as log:
            for raw in iter(service.process.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()
                log.write(line + "\n")
                log.flush()
                service.tail.append(line)
                if self.on_line is not None:
                    try:
                        self.on_line(service.name, line)
                    except Exception:  # a display problem must not stop the log file
                        logger.exception("log callback failed")

    def wait_healthy(self, service: RunningService, timeout: float) -> None:
        """Poll the service's health URL until it answers 200.

        Raises:
            ServiceFailedError: the process exited, or did not answer within ``timeout`` seconds.
        """
        url = service.spec.health_url
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = service.process.poll()
                if code is not None:
                    raise ServiceFailedError(
                        service.name,
                        f"{service.name} exited with code {code} before answering {url}",
                        service.log_tail(),
                    )
                with suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        logger.info("%s is healthy at %s", service.name, url)
                        return
                if time.monotonic() > deadline:
                    raise ServiceFailedError(
                        service.name,
                        f"{service.name} did not answer {url} within {timeout:.0f} s",
                        service.log_tail(),
                    )
                time.sleep(0.25)

    def first_dead(self) -> RunningService | None:
        """The first service whose process has exited, if any."""
        return next((s for s in self.services if s.process.poll() is not None), None)

    def supervise(self, poll_seconds: float = 0.5) -> None:
        """Block while every service runs.

        Raises:
            ServiceFailedError: as soon as one exits.
        """
        while True:
            dead = self.first_dead()
            if dead is not None:
                raise ServiceFailedError(
                    dead.name,
                    f"{dead.name} stopped unexpectedly (exit code {dead.process.returncode})",
                    dead.log_tail(),
                )
            time.sleep(poll_seconds)

    def stop_all(self) -> None:
        """Stop every service: SIGTERM to each group (last started first), wait up to the grace
        period, then SIGKILL whatever is left, grandchildren that left the group included."""
        if not self.services:
            return
        # Ignored meanwhile: a second Ctrl-C must not cut the cleanup short.
        with handling_stop_signals(signal.SIG_IGN):
            running = list(reversed(self.services))
            family = {s.name: descendants(s.process.pid) for s in running}
            for service in running:
                logger.info("stopping %s (pid %d)", service.name, service.process.pid)
                _signal_group(service.process.pid, signal.SIGTERM)
            if not self._wait_gone(running, family, self.grace_seconds):
                for service in running:
                    logger.warning("%s did not stop in time: killing it", service.name)
                    _signal_group(service.process.pid, signal.SIGKILL)
                    _kill_identities(family[service.name])
                self._wait_gone(running, family, 5.0)
            for service in running:
                with suppress(subprocess.TimeoutExpired):
                    service.process.wait(timeout=1)
                if service.reader is not None:
                    service.reader.join(timeout=2)
            self.services.clear()

    def _wait_gone(
        self, running: list[RunningService], family: dict[str, list[Identity]], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for service in running:
                service.process.poll()  # reap the leader, or its zombie keeps the group alive
            left = [s for s in running if group_alive(s.process.pid) or alive(family[s.name])]
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_identities(identities: list[Identity]) -> None:
    for identity in alive(identities):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(identity.pid, signal.SIGKILL)
