"""Hooks that feed :mod:`bikecount.monitoring.metrics`: HTTP middleware and champion gauges.

Requests are labelled by route template (``/jobs/{job_id}``), never by raw path, so a client
sending random URLs cannot create unbounded label values; unmatched paths share one label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bikecount.api.routes import metrics
from bikecount.evaluate import HIGHER_IS_BETTER
from bikecount.monitoring.metrics import record_champion, record_request
from bikecount.registry import Registry

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "<unmatched>"
UNCOUNTED_ROUTES = frozenset({"/metrics"})  # scrapes would drown the request rate


def route_template(scope: Scope) -> str:
    """The template of the route that handled a request, or ``<unmatched>``."""
    route = scope.get("route")  # FastAPI's routes put themselves in the scope when matched
    if route is not None and hasattr(route, "path"):
        return route.path
    app = scope.get("app")
    for candidate in getattr(app, "routes", ()):  # plain Starlette routes: /docs, /openapi.json
        if candidate.matches(scope)[0] == Match.FULL:
            return getattr(candidate, "path", UNMATCHED_ROUTE)
    return UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Count each HTTP request and time it, labelled by route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before sending a status

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            route = route_template(scope)
            if route not in UNCOUNTED_ROUTES:
                record_request(route, scope["method"], status, time.perf_counter() - started)


def install_metrics(app: FastAPI) -> None:
    """Add the request middleware outermost, so it sees the final status of every answer."""
    app.include_router(metrics.router)
    app.add_middleware(RequestMetricsMiddleware)


def record_champion_of(registry: Registry, model_type: str, version: int) -> None:
    """Set the champion gauges from the version's run: its holdout metrics.

    Never raises: the gauges are a view, serving goes on whatever MLflow answers.
    """
    try:
        name = registry.registered_name(model_type)
        run_id = registry.client.get_model_version(name, str(version)).run_id
        metrics = registry.get_run(run_id).data.metrics if run_id else {}
    except Exception as exc:  # MLflow down or the version gone: keep the version gauge at least
        logger.warning("champion metrics of %s v%d unavailable: %s", model_type, version, exc)
        metrics = {}
    holdout = {name: value for name, value in metrics.items() if name in HIGHER_IS_BETTER}
    record_champion(model_type, version, holdout)


def champion_recorder(registry: Registry) -> Callable[[str, int], None]:
    """A :class:`~bikecount.api.model_cache.ModelCache` ``on_champion`` hook setting the gauges."""

    def record(model_type: str, version: int) -> None:
        record_champion_of(registry, model_type, version)

    return record
