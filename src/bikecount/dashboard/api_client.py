"""The dashboard's calls to the RegModel API: its health and ``POST /predict``.

"Ask the model" sends exactly the records it shows, in the API's snake_case spelling, and shows
the API's answer as it came. Failures become :class:`ApiError` with a message a user can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, NotRequired, TypedDict

import httpx
import pandas as pd

from bikecount.forecast import day_hours

HEALTH_TIMEOUT_SECONDS = 2.0
PREDICT_TIMEOUT_SECONDS = 30.0
# What POST /predict answers an interval asked of a version trained before intervals.
NO_INTERVAL_STATUS = 409


class ApiError(RuntimeError):
    """The RegModel API is down, or refused the request (the message says which and why)."""


class PredictAnswer(TypedDict):
    """``POST /predict``'s answer, as the dashboard reads it (the API's ``PredictionsPublic``).

    ``lower`` and ``upper`` bound each prediction when the request asked for an ``interval`` and
    the API gives intervals.
    """

    predictions: list[float]
    labels: NotRequired[list[str] | None]
    lower: NotRequired[list[float] | None]
    upper: NotRequired[list[float] | None]
    model_type: str
    model_version: int
    count: int


@dataclass(frozen=True)
class ApiHealth:
    """``GET /health``: ok or degraded, and the champion version served per model type."""

    status: str
    models: dict[str, int | None]


def check_api(api_url: str) -> ApiHealth:
    """The API's health.

    Raises:
        ApiError: it does not answer, or answers with an error status.
    """
    body = _get_json(api_url, "/health")
    return ApiHealth(status=str(body.get("status")), models=dict(body.get("models") or {}))


def build_records(counters: pd.DataFrame, day: date, hours: list[int]) -> list[dict[str, str]]:
    """Records for each chosen counter (columns counter, lat, lon) at the chosen local hours.

    Hours a daylight-saving day lacks are skipped; the repeated October hour is asked once per
    offset, as the export has it.
    """
    stamps = [ts for ts in day_hours(day) if ts.hour in set(hours)]
    grid = pd.DataFrame(
        [
            {"counter": row.counter, "timestamp": ts, "lat": row.lat, "lon": row.lon}
            for row in counters.itertuples(index=False)
            for ts in stamps
        ],
        columns=["counter", "timestamp", "lat", "lon"],
    )
    return to_api_records(grid)


def to_api_records(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Canonical records (counter, tz-aware timestamp, lat, lon) in the API's snake_case."""
    return [
        {
            "nom_du_compteur": str(row.counter),
            "date_et_heure_de_comptage": row.timestamp.isoformat(),
            "coordonnées_géographiques": f"{row.lat:.6f},{row.lon:.6f}",
        }
        for row in frame.itertuples(index=False)
    ]


def accepts_interval(api_url: str) -> bool:
    """Whether the API's ``POST /predict`` takes an ``interval`` (its OpenAPI schema says so).

    An API without intervals forbids unknown fields, so the dashboard asks for one only where
    it is taken.

    Raises:
        ApiError: the API does not answer, or answers with an error status.
    """
    schemas = _get_json(api_url, "/openapi.json").get("components", {}).get("schemas", {})
    return "interval" in schemas.get("PredictRequest", {}).get("properties", {})


def _get_json(api_url: str, path: str) -> dict[str, Any]:
    """The JSON body of ``GET path`` on the API, answered quickly.

    Raises:
        ApiError: the API does not answer, or answers with an error status.
    """
    try:
        response = httpx.get(
            api_url.rstrip("/") + path, timeout=HEALTH_TIMEOUT_SECONDS, trust_env=False
        )
    except httpx.HTTPError as exc:
        raise ApiError(f"the RegModel API at {api_url} does not answer ({exc})") from exc
    if response.status_code != 200:
        raise ApiError(f"the RegModel API at {api_url} answered {path} with {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


def predict(
    api_url: str,
    records: list[dict[str, str]],
    model_type: str,
    api_key: str | None = None,
    interval: float | None = None,
) -> PredictAnswer:
    """``POST /predict`` with ``records``; the API's JSON answer.

    ``/predict`` is a read, but the key is sent when one is set, as every dashboard call to the
    API does. ``interval`` (a level such as 0.8) is sent only when given; a version trained
    before intervals answers it 409, and is then asked again without one (its forecasts come
    back without ``lower``/``upper``).

    Raises:
        ApiError: the API is down, or answered an error (its detail is in the message).
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    payload: dict[str, object] = {"records": records, "model_type": model_type}
    if interval is not None:
        payload["interval"] = interval
    try:
        response = httpx.post(
            api_url.rstrip("/") + "/predict",
            json=payload,
            headers=headers,
            timeout=httpx.Timeout(PREDICT_TIMEOUT_SECONDS, connect=HEALTH_TIMEOUT_SECONDS),
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise ApiError(f"the RegModel API at {api_url} does not answer ({exc})") from exc
    if response.status_code == NO_INTERVAL_STATUS and interval is not None:
        return predict(api_url, records, model_type, api_key)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:300]
        raise ApiError(f"POST /predict answered {response.status_code}: {detail}")
    answer: PredictAnswer = response.json()
    return answer


def predict_in_batches(
    api_url: str,
    records: list[dict[str, str]],
    model_type: str,
    batch_size: int,
    api_key: str | None = None,
    interval: float | None = None,
    on_batch: Callable[[int, int], object] | None = None,
) -> list[PredictAnswer]:
    """``POST /predict`` for ``records`` in batches of at most ``batch_size`` (the API's bound).

    ``on_batch(done, total)`` is called after each batch (a progress bar).

    Raises:
        ApiError: the API is down or refused a batch (which one is in the message).
    """
    starts = range(0, len(records), batch_size)
    answers: list[PredictAnswer] = []
    for done, start in enumerate(starts, start=1):
        batch = records[start : start + batch_size]
        try:
            answers.append(predict(api_url, batch, model_type, api_key, interval))
        except ApiError as exc:
            if len(starts) == 1:
                raise
            raise ApiError(f"batch {done} of {len(starts)}: {exc}") from exc
        if on_batch is not None:
            on_batch(done, len(starts))
    return answers
