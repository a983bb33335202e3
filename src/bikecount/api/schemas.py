"""Request and response schemas of both APIs, with the examples shown in ``/docs`` and ``/redoc``.

Families follow one naming rule: ``*Request``/``*Body`` come in, ``*Public`` go out.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat
from pydantic.config import JsonDict, JsonValue

from bikecount.config import Env
from bikecount.evaluate import finite_metrics
from bikecount.models.affluence import Label
from bikecount.models.catalog import ModelType, get_spec

if TYPE_CHECKING:
    from bikecount.train import TrainResult

# Kept literal so that the OpenAPI schema lists them; a unit test checks they match
# ``bikecount.evaluate.HIGHER_IS_BETTER``.
Metric = Literal[
    "r2", "rmse", "mae", "rmse_log1p", "accuracy", "precision", "recall", "f1_score", "roc_auc"
]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

# A record is a JSON object of the export's fields; a value may be an object, as the Explore
# API's ``coordinates`` (``{"lon": .., "lat": ..}``) is: the record contract says which fields
# may be one.
RecordValue = str | int | float | None | dict[str, object]
Record = dict[str, RecordValue]
HyperValue = str | int | float | bool | None


def no_control_characters(value: str) -> str:
    """A data set name or path without control characters (a NUL must never reach a path)."""
    if any(ord(char) < 32 for char in value):
        raise ValueError("control characters are not allowed in a data set name or path")
    return value


# A data set name or a file path, as ``data_source``, ``reference`` and ``current`` take it.
DataSource = Annotated[str, AfterValidator(no_control_characters)]

EXAMPLE_RECORD: JsonDict = {
    "Nom du compteur": "Face au 20 avenue Denfert-Rochereau N-S",
    "Date et heure de comptage": "2021-06-01T08:00:00+02:00",
    "Coordonnées géographiques": "48.839328,2.336515",
}
EXAMPLE_SNAKE_RECORD: JsonDict = {
    "nom_du_compteur": "Face au 20 avenue Denfert-Rochereau N-S",
    "date_et_heure_de_comptage": "2021-06-01T18:00:00+02:00",
    "coordonnées_géographiques": "48.839328,2.336515",
    "mois_annee_comptage": "juin 2021",
}
# The Explore API's own spelling: /records answers this way (``coordinates`` an object).
EXAMPLE_API_RECORD: JsonDict = {
    "nom_compteur": "Face au 20 avenue Denfert-Rochereau N-S",
    "date": "2021-06-01T12:00:00+02:00",
    "coordinates": {"lon": 2.336515, "lat": 48.839328},
}
EXAMPLE_JOB_ID = "4f0c2b1e9a7d4c3b8e6f5a4d3c2b1a09"
# fmt: off
EXAMPLE_PREDICTIONS: list[JsonValue] = [
    {"predictions": [212.4, 187.9], "labels": None, "model_type": "rf", "model_version": 3,
     "count": 2},
    {"predictions": [1, 0], "labels": ["forte", "faible"], "model_type": "rf_class",
     "model_version": 1, "count": 2},
    {"predictions": [212.4], "labels": None, "model_type": "gbm", "model_version": 3,
     "count": 1, "lower": [151.0], "upper": [281.2]},
]
EXAMPLE_TRAINED: JsonDict = {
    "status": "succeeded", "job_id": EXAMPLE_JOB_ID, "run_id": "b676ec87023c42e4902cf3c844dd4f21",
    "model_type": "rf", "model_name": "bikecount-rf", "model_version": 2,
    "model_uri": "models:/bikecount-rf/2", "champion": True,
    "champion_reason": "rmse 37.57 beats 44.26",
    "metrics": {"rmse": 37.57, "mae": 18.41, "r2": 0.758, "rmse_log1p": 0.483},
    "data_path": "data/reference_data.csv", "rows_train": 9801, "rows_holdout": 2431,
    "rows_fit": 12232, "trained_until": "2021-05-31T23:00:00+02:00", "refit": True,
    "rows_dropped": 0, "duration_seconds": 2.3,
}
EXAMPLE_ACCEPTED: JsonDict = {
    "job_id": EXAMPLE_JOB_ID, "status": "queued", "status_url": f"/train/{EXAMPLE_JOB_ID}",
}
EXAMPLE_HEALTH: JsonDict = {
    "status": "ok", "mlflow": {"uri": "http://127.0.0.1:5000", "reachable": True},
    "models": {"rf": 2, "gbm": None, "nn": None, "rf_class": 1}, "uptime_seconds": 73.2,
    "version": "0.1.0",
}
# fmt: on
RECORDS_DESCRIPTION = (
    "Rows of the Paris Open Data export, in its French headers, in the Explore API's field "
    'names (`nom_compteur`, `date`, `coordinates` as `"lat,lon"` or `{"lon", "lat"}`, '
    "`sum_counts`) or in snake_case (`nom_du_compteur`, `date_et_heure_de_comptage`, "
    "`coordonnées_géographiques`); one spelling per field. "
    "Every record must be valid; the bound on their number is configurable (default 10,000)."
)


class PredictRequest(BaseModel):
    """Records to predict, with the model type and, optionally, a metric choosing the version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "records": [EXAMPLE_RECORD, EXAMPLE_SNAKE_RECORD, EXAMPLE_API_RECORD],
                    "model_type": "rf",
                },
                {"records": [EXAMPLE_RECORD], "model_type": "gbm", "metric": "r2"},
                {"records": [EXAMPLE_RECORD], "model_type": "gbm", "interval": 0.8},
            ]
        },
    )

    records: list[Record] = Field(min_length=1, description=RECORDS_DESCRIPTION)
    model_type: ModelType = Field(default="rf", description="Which model family predicts.")
    metric: Metric | None = Field(
        default=None,
        description="Serve the registered version that is best on this holdout metric "
        "instead of the champion (r2, rmse, mae, rmse_log1p for regressors; accuracy, "
        "precision, recall, f1_score, roc_auc for rf_class).",
    )
    interval: StrictFloat | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Also give each prediction's interval at this level (e.g. 0.8: four "
        "counts in five fall inside), as `lower` and `upper`; regressors only. Calibrated on "
        "the model's training holdout (versions trained before intervals have none: 409).",
    )


class PredictionsPublic(BaseModel):
    """Predictions in input order, and the model version that made them."""

    model_config = ConfigDict(json_schema_extra={"examples": EXAMPLE_PREDICTIONS})

    predictions: list[int] | list[float] = Field(
        description="Hourly bike counts (regressors) or 0/1 classes (rf_class), in input order."
    )
    labels: list[Label] | None = Field(default=None, description="rf_class only.")
    model_type: ModelType
    model_version: int
    count: int
    lower: list[float] | None = Field(
        default=None, description="Each prediction's interval, low end (only when asked)."
    )
    upper: list[float] | None = Field(
        default=None, description="Each prediction's interval, high end (only when asked)."
    )


class LegacyPredictRequest(BaseModel):
    """The ClassModel API's request: records only (the affluence classifier is implied)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"records": [EXAMPLE_RECORD]}]})

    records: list[Record] = Field(min_length=1, description=RECORDS_DESCRIPTION)


class LegacyPredictionsPublic(BaseModel):
    """The ClassModel API's answer: classes and their labels, in input order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"predictions": [1], "label": ["forte"], "model_version": 1}]
        }
    )

    predictions: list[int]
    label: list[Label]
    model_version: int


class TrainRequestBody(BaseModel):
    """What to train; everything is checked before the training starts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True},
                {
                    "model_type": "gbm",
                    "data_source": "reference",
                    "hyperparams": {"max_iter": 200, "learning_rate": 0.05},
                    "wait": False,
                },
            ]
        },
    )

    model_type: ModelType
    data_source: DataSource = Field(
        default="reference",
        min_length=1,
        max_length=255,
        description="reference, current, test_sample, or a file path inside the data folder.",
    )
    env: Env | None = Field(
        default=None, description="Experiment and artifact store; default: the server's env."
    )
    hyperparams: dict[str, HyperValue] = Field(
        default_factory=dict, description="Overrides of the model type's hyperparameters."
    )
    test_mode: bool = Field(
        default=False, description="Train on test_sample.csv with fast settings (seconds)."
    )
    holdout_from: date | None = Field(
        default=None,
        description="Hold out the records from this local day on (YYYY-MM-DD) to score the "
        "model and the champion; default: the last BIKECOUNT_HOLDOUT_DAYS days.",
    )
    refit: bool = Field(
        default=True,
        description="Refit on every row, holdout included, for the registered model (default); "
        "false registers the evaluation fit (faster; it never saw the holdout days).",
    )
    wait: bool = Field(
        default=True, description="Answer when done (default), or at once with a job to poll."
    )


class TrainPublic(BaseModel):
    """A finished training: the MLflow run, the registered version and its holdout metrics."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_TRAINED]})

    status: Literal["succeeded"] = "succeeded"
    job_id: str
    run_id: str
    model_type: ModelType
    model_name: str
    model_version: int
    model_uri: str
    champion: bool
    champion_reason: str
    metrics: dict[str, float | None]
    data_path: str
    rows_train: int = Field(description="Rows of the evaluation fit (before the holdout).")
    rows_holdout: int
    rows_fit: int = Field(description="Rows the registered model was fitted on.")
    trained_until: str = Field(description="The last timestamp the registered model knows.")
    refit: bool
    rows_dropped: int
    duration_seconds: float

    @classmethod
    def from_result(cls, job_id: str, result: TrainResult) -> TrainPublic:
        return cls(
            job_id=job_id,
            run_id=result.run_id,
            model_type=get_spec(result.model_type).name,
            model_name=result.model_name,
            model_version=result.version,
            model_uri=result.model_uri,
            champion=result.champion,
            champion_reason=result.champion_reason,
            metrics=finite_metrics(result.metrics),
            data_path=result.data_path,
            rows_train=result.rows_train,
            rows_holdout=result.rows_holdout,
            rows_fit=result.rows_fit,
            trained_until=result.trained_until,
            refit=result.refit,
            rows_dropped=result.rows_dropped,
            duration_seconds=result.duration_seconds,
        )


class JobAccepted(BaseModel):
    """A training accepted to run in the background (``wait: false``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_ACCEPTED]})

    job_id: str
    status: JobStatus
    status_url: str


class JobError(BaseModel):
    """Why a training failed: the HTTP status it maps to, the error's kind and message, and the
    request field at fault when there is one (``data_source`` for an unreadable file)."""

    status_code: int
    type: str
    message: str
    field: str | None = None


class JobPublic(BaseModel):
    """A training job: its state, its current stage, then its result or its error."""

    job_id: str
    status: JobStatus
    model_type: ModelType
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    stage: str | None = Field(default=None, description="What the training is doing now.")
    result: TrainPublic | None = None
    error: JobError | None = None


class MlflowStatus(BaseModel):
    uri: str = Field(description="Tracking URI, credentials removed.")
    reachable: bool


class HealthPublic(BaseModel):
    """Liveness and what is served: ``degraded`` when MLflow cannot be reached."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_HEALTH]})

    status: Literal["ok", "degraded"]
    mlflow: MlflowStatus
    models: dict[str, int | None] = Field(
        description="The champion version loaded per model type (null: none loaded yet)."
    )
    uptime_seconds: float
    version: str


class VersionPublic(BaseModel):
    """One registered version, its holdout metrics and whether it is the champion."""

    model_type: ModelType
    version: int
    run_id: str
    champion: bool
    test_mode: bool
    env: str | None
    created: int = Field(description="Registration time, milliseconds since the epoch.")
    metrics: dict[str, float | None]


class ModelsPublic(BaseModel):
    models: list[VersionPublic]
    count: int


class ReloadPublic(BaseModel):
    """The cache was emptied; champions are read again from the registry."""

    status: Literal["reloaded"] = "reloaded"
    cleared: int = Field(description="How many loaded models were dropped.")
    models: dict[str, int | None] = Field(
        default_factory=dict, description="Champion versions loaded again (null: none)."
    )


class ErrorPublic(BaseModel):
    """Every error body: a message, or FastAPI's list of ``{loc, msg, type}`` items."""

    # The items' ``input`` is whatever the request held there.
    detail: str | list[dict[str, object]]
