"""The data pipeline without Airflow: ingest a day, predict a day, monitor and retrain.

Each step is a plain function over a :class:`~bikecount.config.Settings` and a SQLAlchemy store;
``bikecount pipeline ...`` and the Airflow DAGs are thin shells over them. Calls to the RegModel
API go through :func:`call_api`, which turns transport and HTTP failures into one
:class:`PipelineError` that says what to check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from bikecount.config import Settings

logger = logging.getLogger(__name__)

# Connecting should be quick; a prediction batch or a training may take a while to answer.
CONNECT_TIMEOUT_SECONDS = 5.0


class PipelineError(RuntimeError):
    """A pipeline step that cannot go on: the API is down or refused, or data is missing.

    Attributes:
        status_code: the API's error status when it answered one (None: no answer, or no API).
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def call_api(
    settings: Settings,
    api_url: str,
    path: str,
    payload: Mapping[str, object] | None,
    timeout: float,
    method: str = "POST",
) -> dict[str, Any]:
    """Send ``payload`` to the RegModel API (``method``, POST by default; the write key when
    one is set) and return its JSON answer (its shape depends on ``path``: the caller reads it).

    Raises:
        PipelineError: the API cannot be reached, times out or answers with an error status.
    """
    url = api_url.rstrip("/") + path
    headers = {}
    if settings.api_key is not None:
        headers["X-API-Key"] = settings.api_key.get_secret_value()
    limits = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_SECONDS)
    try:
        response = httpx.request(method, url, json=payload, headers=headers, timeout=limits)
    except httpx.TimeoutException as exc:
        raise PipelineError(
            f"the RegModel API at {api_url} did not answer {path} in time ({exc})"
        ) from exc
    except httpx.TransportError as exc:
        raise PipelineError(
            f"the RegModel API at {api_url} is unreachable ({exc}); is it running? "
            "(`bikecount up`, or give --api-url)"
        ) from exc
    if response.status_code >= 400:
        raise PipelineError(
            f"{method} {path} failed with {response.status_code}: {_detail(response)}",
            status_code=response.status_code,
        )
    return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]
