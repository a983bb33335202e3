"""The local stack without Docker: MLflow, the RegModel API and (legacy) the ClassModel API as
child processes, started in order, bootstrapped on first use, watched, and stopped together.

Library code: it logs and reports through callbacks; ``bikecount.cli.stack`` draws the output.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from bikecount.config import Settings
from bikecount.registry import Registry
from bikecount.stack.background import BackgroundWork
from bikecount.stack.first_start import (
    BootstrapError,
    BootstrapHooks,
    BootstrapReport,
    bootstrap,
    server_settings,
)
from bikecount.stack.processes import (
    LineCallback,
    ProcessManager,
    RestartPolicy,
    ServiceFailedError,
    StackError,
    handling_stop_signals,
)
from bikecount.stack.services import REGMODEL, ServiceSpec, StackOptions, build_services

__all__ = [
    "BootstrapError",
    "BootstrapHooks",
    "BootstrapReport",
    "PortInUseError",
    "ServiceFailedError",
    "StackError",
    "StackHooks",
    "StackOptions",
    "StopRequested",
    "check_ports",
    "build_services",
    "port_is_free",
    "run_stack",
]


class PortInUseError(StackError):
    """A port the stack needs is taken (or asked for twice)."""


class StopRequested(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop the stack. A KeyboardInterrupt, so one path handles both."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(services: list[ServiceSpec]) -> None:
    """Fail before starting anything if a port is taken or given to two services.

    Raises:
        PortInUseError: naming the port, its usual owner and the option that changes it.
    """
    seen: dict[int, str] = {}
    for spec in services:
        if spec.port in seen:
            raise PortInUseError(
                f"port {spec.port} is asked for both {seen[spec.port]} and {spec.name}: "
                f"pass another {spec.port_option}"
            )
        seen[spec.port] = spec.name
        if not port_is_free(spec.host, spec.port):
            raise PortInUseError(
                f"port {spec.port} is in use (by {spec.usual_owner}): "
                f"stop it or pass {spec.port_option}"
            )


def _request_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


def _ignore(*args: object) -> None:
    return None


@dataclass
class StackHooks:
    """Callbacks of a running stack.

    Attributes:
        on_line: (service, line) for every log line of a child (called from reader threads).
        on_starting: a service is about to start.
        on_healthy: a service answered its health check.
        on_ready: every service is healthy; the stack runs until stopped.
        bootstrap: the first-start callbacks.
        on_background: a sentence from the first-start work that goes on once the stack is up.
    """

    on_line: LineCallback | None = None
    on_starting: Callable[[ServiceSpec], None] = _ignore
    on_healthy: Callable[[ServiceSpec], None] = _ignore
    on_ready: Callable[[Sequence[ServiceSpec], BootstrapReport | None], None] = _ignore
    bootstrap: BootstrapHooks = field(default_factory=BootstrapHooks)
    on_background: Callable[[str], None] | None = None


def run_stack(settings: Settings, options: StackOptions, hooks: StackHooks | None = None) -> None:
    """Start the stack and block until it is stopped (SIGINT/SIGTERM) or a service keeps dying
    (a crashed service is restarted with backoff while the others run on).

    Every child is stopped on the way out, whatever the reason.

    Raises:
        PortInUseError: before anything starts.
        ServiceFailedError: a service did not become healthy, or crashed too often.
        BootstrapError: the data sets could not be made, or the registry could not be read.
        StopRequested: a signal asked the stack to stop (after everything has stopped).
    """
    hooks = hooks or StackHooks()
    services = build_services(settings, options)
    check_ports(services)
    restart = RestartPolicy(
        max_restarts=settings.stack_max_restarts,
        backoff_seconds=settings.stack_restart_backoff_seconds,
        window_seconds=settings.stack_restart_window_seconds,
        health_timeout_seconds=options.health_timeout,
    )
    manager = ProcessManager(settings.logs_dir, hooks.on_line, options.grace_seconds, restart)
    mlflow, *apis = services
    with handling_stop_signals(_request_stop), manager:
        _start_and_wait(manager, [mlflow], options, hooks)
        # The stack's settings pointed at its MLflow server, and the one registry on it.
        on_server = server_settings(settings, mlflow.url)
        registry = Registry(on_server)
        report = None
        if options.bootstrap:
            # After MLflow (models are registered there), before the APIs (which load them).
            report = bootstrap(on_server, registry, hooks.bootstrap)
        _start_and_wait(manager, apis, options, hooks)
        hooks.on_ready(services, report)
        background = None
        if options.bootstrap:
            # Full models and a filled store: after the first models answer, never blocking.
            api = next(spec for spec in apis if spec.name == REGMODEL)
            background = BackgroundWork(on_server, registry, api.url)
            if hooks.on_background is not None:
                background.on_message = hooks.on_background
            background.start()
        try:
            manager.supervise()
        finally:
            if background is not None:
                background.stop()


def _start_and_wait(
    manager: ProcessManager, specs: Sequence[ServiceSpec], options: StackOptions, hooks: StackHooks
) -> None:
    # Start them all, then wait: the APIs boot side by side (imports take seconds each).
    running = []
    for spec in specs:
        hooks.on_starting(spec)
        running.append(manager.start(spec))
    for service in running:
        manager.wait_healthy(service, options.health_timeout)
        hooks.on_healthy(service.spec)
