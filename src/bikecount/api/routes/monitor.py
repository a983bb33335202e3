"""``POST /monitor``: drift of current data (a data set or records in the body) and model decay."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bikecount.api.deps import RegistryDep, SettingsDep, WriteAccess
from bikecount.api.errors import InvalidFieldError, TooManyRecordsError
from bikecount.api.jobs import path_inside_data_dir
from bikecount.api.records_body import records_frame
from bikecount.api.schemas import EXAMPLE_RECORD, DataSource, ErrorPublic, ModelType, Record
from bikecount.config import DATASET_FILES, Settings
from bikecount.data.datasets import resolve_data_source
from bikecount.data.io import DataFileError
from bikecount.monitoring import metrics
from bikecount.monitoring.inputs import MonitoringData, MonitoringDataError
from bikecount.monitoring.reports import prune_reports
from bikecount.monitoring.run import MonitoringResult, run_monitoring
from bikecount.records import require_valid

logger = logging.getLogger(__name__)

router = APIRouter(tags=["monitor"])

DATA_SET_HELP = "reference, current, test_sample, or a file path inside the data folder."


class MonitorRequestBody(BaseModel):
    """What to compare: the reference, and the current data as a data set or as records."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reference": "reference", "current": "current", "model_type": "gbm"},
                {"reference": "reference", "records": [EXAMPLE_RECORD]},
            ]
        },
    )

    reference: DataSource = Field(
        default="reference", min_length=1, max_length=255, description=DATA_SET_HELP
    )
    current: DataSource | None = Field(
        default=None, min_length=1, max_length=255, description=f"{DATA_SET_HELP} Default: current."
    )
    records: list[Record] | None = Field(
        default=None,
        description="Current records in the body (either spelling; with counts to score the "
        "champion). Bounded by the server's BIKECOUNT_MONITOR_MAX_RECORDS.",
    )
    model_type: ModelType = Field(default="gbm", description="The champion to score.")

    @model_validator(mode="after")
    def _one_current(self) -> MonitorRequestBody:
        if self.current is not None and self.records is not None:
            raise ValueError("give either current (a data set) or records, not both")
        if self.records is not None and not self.records:
            raise ValueError("records is empty: give at least one record")
        return self


class ColumnDriftPublic(BaseModel):
    score: float | None
    method: str | None = None
    threshold: float | None = None
    drifted: bool


class ChampionPublic(BaseModel):
    model_type: str
    version: int | None = None
    rows: int = 0
    metrics_current: dict[str, float | None] | None = None
    metrics_holdout: dict[str, float | None] | None = None
    reason: str | None = Field(default=None, description="Why the champion was not scored.")


class MonitorPublic(BaseModel):
    """The drift verdict, each column's score, the champion on current data, report and run."""

    drift_detected: bool
    drift_share: float
    share_threshold: float
    drifted_columns: list[str]
    column_scores: dict[str, ColumnDriftPublic]
    target_drift: ColumnDriftPublic | None = None
    n_reference: int
    n_current: int
    champion: ChampionPublic
    report_path: str | None
    run_id: str
    experiment: str
    sources: dict[str, str]
    duration_seconds: float


MONITOR_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorPublic, "description": "Missing or wrong X-API-Key."},
    413: {"model": ErrorPublic, "description": "More records than the server accepts."},
    422: {"model": ErrorPublic, "description": "A field is wrong: which one and why."},
    503: {"model": ErrorPublic, "description": "MLflow cannot be reached, or failed."},
}


@router.post(
    "/monitor",
    summary="Run drift monitoring",
    dependencies=[WriteAccess],
    responses=MONITOR_RESPONSES,
)
def run_monitor(
    body: MonitorRequestBody, settings: SettingsDep, registry: RegistryDep
) -> MonitorPublic:
    """Compare current data with the reference (Evidently), score the champion on it, log the
    run to MLflow (experiment ``bikecount-monitoring``) and return the summary. Records are read
    as ``/predict`` reads them (either spelling, each record on its own); the newest
    ``BIKECOUNT_REPORTS_KEEP`` HTML reports are kept on disk.

    A sync handler: FastAPI runs it in its thread pool, so the CPU-bound comparison never
    blocks the event loop.
    """
    if body.records is not None and len(body.records) > settings.monitor_max_records:
        raise TooManyRecordsError(
            f"{len(body.records):,} records; at most {settings.monitor_max_records:,} per request"
        )
    current: MonitoringData
    if body.records is not None:
        # Read as /predict reads them (each record in either spelling, huge integers refused),
        # before any file is read.
        current = require_valid(records_frame(body.records))
    # Then whether MLflow answers: the run is logged there, and a dead server must not hold
    # this request for minutes (503 naming it).
    registry.check_reachable()
    if body.records is None:
        current = data_file("current", body.current or "current", settings)
    reference = data_file("reference", body.reference, settings)
    try:
        # A damaged or foreign file is a MonitoringDataError naming its side.
        result = run_monitoring(settings, registry, reference, current, body.model_type)
    except MonitoringDataError as exc:
        field = "records" if body.records is not None and exc.side == "current" else exc.side
        raise InvalidFieldError(field, str(exc)) from None
    publish_drift(result)
    prune_reports(settings.reports_dir, settings.reports_keep)
    return MonitorPublic.model_validate(result.as_dict())


def data_file(field: str, source: str, settings: Settings) -> Path:
    """The existing record file behind a data set name or a path inside the data folder."""
    try:
        if source not in DATASET_FILES:
            source = str(path_inside_data_dir(source, settings))
        return resolve_data_source(source, settings)
    except InvalidFieldError as exc:
        # The /train check names its own field (data_source); name ours.
        raise InvalidFieldError(field, exc.message) from None
    except (DataFileError, OSError, RuntimeError) as exc:  # OSError: e.g. a name too long
        raise InvalidFieldError(field, str(exc)) from None


def publish_drift(result: MonitoringResult) -> None:
    """The latest drift figures for Prometheus (``GET /metrics``)."""
    drift = result.drift
    columns = {name: bool(score["drifted"]) for name, score in drift.column_scores.items()}
    metrics.record_drift(drift.drift_share, drift.drift_detected, columns)
