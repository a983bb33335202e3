"""Child processes of the stack: start them, stream and keep their logs, wait for their health
checks, supervise them, and stop them all, grandchildren included.

Each child runs in a session (and process group) of its own, so that a terminal's Ctrl-C reaches
only ``bikecount up``, which then stops every group in order: MLflow and ``uvicorn --reload`` both
spawn children of their own, and signalling the group reaches them too.

Supervision is per service: a service that crashes (or, restarted, never answers its health
check) is restarted after a backoff that doubles with each crash, while the others keep running:
the API serves its cached models while MLflow comes back. Only a service that keeps crashing
(more than ``RestartPolicy.max_restarts`` times within ``window_seconds``) stops the stack.
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
from types import FrameType, TracebackType

import httpx

from bikecount.stack.process_table import Identity, alive, descendants, group_alive
from bikecount.stack.services import ServiceSpec

logger = logging.getLogger(__name__)

LineCallback = Callable[[str, str], None]
TAIL_LINES = 30


class StackError(RuntimeError):
    """The stack could not start or keep running; the message says why and what to do."""


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed services are restarted.

    Attributes:
        max_restarts: restarts allowed within ``window_seconds``; one crash more stops the stack
            (0: the first crash does).
        backoff_seconds: the wait before the first restart; it doubles with each crash in the
            window, up to ``max_backoff_seconds``.
        window_seconds: crashes older than this are forgotten: a service that ran that long
            has earned a fresh start.
        health_timeout_seconds: a restarted service that does not answer its health check in
            this time counts as crashed.
    """

    max_restarts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    window_seconds: float = 300.0
    health_timeout_seconds: float = 120.0

    def delay(self, crashes: int) -> float:
        """The wait before restarting a service that crashed ``crashes`` times in the window."""
        return min(self.backoff_seconds * 2 ** max(crashes - 1, 0), self.max_backoff_seconds)


class ServiceFailedError(StackError):
    """A service died or never answered its health check; ``log_tail`` holds its last lines."""

    def __init__(self, service: str, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.service = service
        self.log_tail = log_tail


@contextmanager
def handling_stop_signals(
    handler: Callable[[int, FrameType | None], object] | int,
) -> Iterator[None]:
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
    # Supervision: when it was (re)started, whether it answered its health check since, when
    # it crashed within the policy's window, and when a pending restart is due.
    started_at: float = field(default_factory=time.monotonic)
    healthy: bool = False
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None

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
        logs_dir: where ``<service>.log`` files are written (truncated at each start, appended
            to at each restart).
        on_line: called with (service, line) for every line a child writes, from reader threads,
            and for the supervisor's notices (``[bikecount up] ...``) about that service.
        grace_seconds: how long a stopped group may take before it is killed.
        restart: how :meth:`supervise` restarts crashed services.
    """

    def __init__(
        self,
        logs_dir: Path,
        on_line: LineCallback | None = None,
        grace_seconds: float = 10.0,
        restart: RestartPolicy | None = None,
    ) -> None:
        self.logs_dir = logs_dir
        self.on_line = on_line
        self.grace_seconds = grace_seconds
        self.restart = restart or RestartPolicy()
        self.services: list[RunningService] = []
        # Held while a service is examined or restarted, and by stop_all: once stopping, no
        # supervisor (in another thread) may start anything again.
        self._lock = threading.Lock()
        self._stopping = False

    def __enter__(self) -> ProcessManager:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(self, spec: ServiceSpec) -> RunningService:
        """Start ``spec`` in a new session with its output piped to the log and ``on_line``."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        logger.info("starting %s: %s", spec.name, " ".join(spec.command))
        service = RunningService(spec, _spawn(spec), self.logs_dir / f"{spec.name}.log")
        self.services.append(service)
        self._read_output(service, mode="w")
        return service

    def _read_output(self, service: RunningService, mode: str) -> None:
        service.reader = threading.Thread(
            target=self._pump, args=(service, mode), name=f"log-{service.name}", daemon=True
        )
        service.reader.start()

    def _pump(self, service: RunningService, mode: str) -> None:
        # One thread per child: copy each line to its log file, the tail and the callback.
        process = service.process
        assert process.stdout is not None
        with service.log_path.open(mode, encoding="utf-8") as log:
            if mode == "a":
                log.write(f"--- restarted by bikecount up (restart {service.restarts}) ---\n")
            for raw in iter(process.stdout.readline, b""):
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
                        service.healthy = True
                        return
                if time.monotonic() > deadline:
                    raise ServiceFailedError(
                        service.name,
                        f"{service.name} did not answer {url} within {timeout:.0f} s",
                        service.log_tail(),
                    )
                time.sleep(0.25)

    def first_dead(self) -> RunningService | None:
        """The first service whose process has exited (and is not waiting to restart), if any."""
        return next(
            (s for s in self.services if s.restart_at is None and s.process.poll() is not None),
            None,
        )

    def supervise(self, poll_seconds: float = 0.5) -> None:
        """Block while the stack runs, restarting crashed services (see :class:`RestartPolicy`).

        Each crash and restart is announced through ``on_line`` (and logged); the other
        services are left running throughout.

        Returns once :meth:`stop_all` has been called (from another thread).

        Raises:
            ServiceFailedError: a service crashed more often than the policy allows.
        """
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while not self._stopping:
                for service in list(self.services):
                    with self._lock:
                        if self._stopping:
                            return
                        self._watch(service, client)
                time.sleep(poll_seconds)

    def _watch(self, service: RunningService, client: httpx.Client) -> None:
        now = time.monotonic()
        if service.restart_at is not None:
            if now >= service.restart_at:
                self._restart(service)
            return
        code = service.process.poll()
        if code is not None:
            self._crashed(service, f"exited with code {code}")
        elif not service.healthy:
            with suppress(httpx.HTTPError):
                if client.get(service.spec.health_url).status_code == 200:
                    service.healthy = True
                    self._notice(service, f"{service.name} is back ({service.spec.health_url})")
                    return
            if now - service.started_at > self.restart.health_timeout_seconds:
                timeout = self.restart.health_timeout_seconds
                self._crashed(service, f"did not answer its health check within {timeout:.0f} s")

    def _crashed(self, service: RunningService, what: str) -> None:
        """Clear what is left of a crashed service and schedule its restart, or give up."""
        # Its children may outlive it and hold its port: the whole group goes first.
        _signal_group(service.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=2)
        now = time.monotonic()
        window = self.restart.window_seconds
        service.crashes = [t for t in service.crashes if now - t < window] + [now]
        crashes = len(service.crashes)
        if crashes > self.restart.max_restarts:
            message = (
                f"{service.name} {what}; it crashed {crashes} time(s) within {window:.0f} s, "
                "more than BIKECOUNT_STACK_MAX_RESTARTS allows: giving up"
            )
            self._notice(service, message)
            raise ServiceFailedError(service.name, message, service.log_tail())
        delay = self.restart.delay(crashes)
        self._notice(
            service,
            f"{service.name} {what}; restarting it in {delay:g} s (crash {crashes} of "
            f"{self.restart.max_restarts} allowed within {window:.0f} s; the other services "
            "keep running)",
        )
        service.restart_at = now + delay

    def _restart(self, service: RunningService) -> None:
        if service.reader is not None:
            service.reader.join(timeout=2)  # the old output, fully copied, before the new
        service.restarts += 1
        logger.info("restarting %s: %s", service.name, " ".join(service.spec.command))
        service.process = _spawn(service.spec)
        service.started_at, service.healthy, service.restart_at = time.monotonic(), False, None
        self._read_output(service, mode="a")

    def _notice(self, service: RunningService, message: str) -> None:
        logger.warning("%s", message)
        if self.on_line is not None:
            try:
                self.on_line(service.name, f"[bikecount up] {message}")
            except Exception:  # a display problem must not stop the supervision
                logger.exception("log callback failed")

    def stop_all(self) -> None:
        """Stop every service: SIGTERM to each group (last started first), wait up to the grace
        period, then SIGKILL whatever is left, grandchildren that left the group included."""
        with self._lock:
            self._stopping = True
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


def _spawn(spec: ServiceSpec) -> subprocess.Popen[bytes]:
    """``spec``'s command in a new session, its output on one pipe."""
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        spec.command,
        env=env,
        cwd=spec.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_identities(identities: list[Identity]) -> None:
    for identity in alive(identities):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(identity.pid, signal.SIGKILL)
