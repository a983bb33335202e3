"""``GET /metrics``: the Prometheus exposition of this API process (every worker's in multiprocess
mode); see :mod:`bikecount.monitoring.metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from bikecount.monitoring.metrics import render_metrics

router = APIRouter(tags=["health"])


# Out of the OpenAPI schema: it is for Prometheus, and its text format is not JSON.
@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus text format: HTTP, prediction, champion, training and drift metrics."""
    body, content_type = render_metrics()
    return Response(content=body, media_type=content_type)
