"""train(): fit a model on a temporal split, score its holdout, refit it on every row, log it to
MLflow, register it, and crown it champion only when it earns it.

The steps are pure and live elsewhere: fitting in :func:`bikecount.fitting.fit_and_evaluate`, the
champion policy in :func:`bikecount.champion.decide_champion`. Here they are wired to the edges:
reading the file, the cost guard in front, the MLflow run, the registry.

The model that is registered and served learns from every row, holdout included: the latest days
are what a forecast needs most. Its holdout metrics come from the evaluation fit, made without
the holdout, so they stay honest; ``trained_until`` says what the served model knows, and the
champion decision never scores a model on rows it was fitted on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from pydantic import BaseModel

from bikecount.champion import Challenger, Champion, ChampionDecision, decide_champion
from bikecount.config import Env, Settings
from bikecount.data.datasets import resolve_data_source
from bikecount.data.io import read_records
from bikecount.evaluate import HoldoutSplit, split_holdout
from bikecount.fingerprint import file_fingerprint
from bikecount.fitting import FitResult, StageCallback, fit_and_evaluate
from bikecount.models import ModelSpec, get_spec, parse_params
from bikecount.models.limits import check_training_limits
from bikecount.models.param_types import ParamValue
from bikecount.models.protocol import RecordModel
from bikecount.records import ParsedRecords, parse_records, to_raw_records
from bikecount.registry import Registry, trained_until
from bikecount.run_faults import cleaning_failed_run
from bikecount.stopping import StopToken, marking_stopped_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    model_type: str
    data_source: str = "reference"
    env: Env = "dev"
    # Overrides of the model type's defaults, as given (strings from the command line).
    hyperparams: Mapping[str, object] = field(default_factory=dict)
    test_mode: bool = False
    # Hold out the records from this local day on (default: the last ``holdout_days`` days).
    holdout_from: date | None = None
    # Refit on every row (holdout included) for the registered model; False keeps the
    # evaluation fit (faster, but the served model never saw the holdout days).
    refit: bool = True
    # More tags of the MLflow run (the API's job id and instance).
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_id: str
    model_type: str
    model_name: str
    version: int
    model_uri: str
    champion: bool
    champion_reason: str
    metrics: dict[str, float]
    params: dict[str, ParamValue]
    data_path: str
    rows_train: int
    rows_holdout: int
    rows_fit: int
    trained_until: str
    refit: bool
    rows_dropped: int
    drop_reasons: dict[str, int]
    duration_seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def train(
    request: TrainRequest,
    settings: Settings,
    registry: Registry,
    on_stage: StageCallback | None = None,
    stop: StopToken | None = None,
) -> TrainResult:
    """Train one model and register it; see the module docstring.

    Everything is validated before any MLflow run is created (model type, hyperparameters, data
    file, the estimated cost against the settings' limits). A run that fails is recorded as
    FAILED in MLflow and never touches the champion. ``stop`` (default: the settings' time
    limit) is checked between stages and while the model fits (in a child process); a stopped
    run is marked KILLED (cancelled) or FAILED (time limit) and never touches the champion.

    Raises:
        UnknownModelTypeError, HyperparameterError (TrainingCostError), DataFileError,
        RecordError, ValueError, TrainingStoppedError; StorageError: the artifact store's disk
        is full, read-only or forbidden (the run FAILED, what it wrote of the model removed).
    """
    stop = stop or StopToken(settings.train_time_limit_seconds)
    stage = on_stage or (lambda message: logger.info(message))
    started = time.perf_counter()
    spec, params, path = validate_train_request(request, settings)
    registry.check_reachable()  # within seconds, not MLflow's minutes of retries

    stage(f"reading {path}")
    data = read_training_data(path, settings.holdout_days, request.holdout_from)
    refit_rows = len(data.frame) if request.refit else None
    check_training_limits(request.model_type, params, len(data.split.train), settings, refit_rows)
    stop.check("starting")

    registry.use_for_runs()
    experiment_id = registry.training_experiment(request.env)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=request.model_type) as run,
        marking_stopped_run(),
        # A full artifact disk: the half-written model removed, the reason on the run.
        cleaning_failed_run(),
    ):
        mlflow.set_tags({**_run_tags(request, data, spec.name), **request.tags})
        mlflow.log_params({**params.model_dump(), **_split_params(data)})
        fitted = _fit_in_run(request, params, data, settings, stage, stop)
        # The last stop: once registering has begun, the training finishes.
        stop.check("about to register the model")
        stage("logging and registering the model")
        name = registry.registered_name(request.model_type)
        version = _log_model(fitted.model, name, data.split.holdout, spec.torch)
        stage("comparing with the champion")
        decision = crown_if_earned(registry, request, version, fitted, data.fingerprint)
    duration = round(time.perf_counter() - started, 2)
    run_id = run.info.run_id
    return _train_result(request, params, data, fitted, run_id, name, version, decision, duration)


@dataclass(frozen=True)
class TrainingData:
    """The records a training reads: its file, the parsed rows and their temporal split."""

    path: Path
    records: ParsedRecords
    split: HoldoutSplit
    fingerprint: str

    @property
    def frame(self) -> pd.DataFrame:
        return self.records.frame


def read_training_data(
    path: Path, holdout_days: int, holdout_from: date | None = None
) -> TrainingData:
    """Read and parse a record file and split it in time (see
    :func:`~bikecount.evaluate.split_holdout`).

    Raises:
        DataFileError, RecordError; ValueError: no valid record, or no temporal holdout.
    """
    parsed = parse_records(read_records(path), require_count=True)
    if parsed.frame.empty:
        raise ValueError(f"{path}: no valid records ({parsed.dropped_rows} rows dropped)")
    split = split_holdout(parsed.frame, holdout_days, start=holdout_from)
    return TrainingData(path, parsed, split, file_fingerprint(path))


class EnvUnavailableError(ValueError):
    """This installation cannot store runs of the requested env (prod without its bucket)."""


def validate_train_request(
    request: TrainRequest, settings: Settings
) -> tuple[ModelSpec, BaseModel, Path]:
    """Every check of a training request that can fail before any work, in one place: the
    model type, the hyperparameters, the env and the data file (``POST /train`` runs it before
    it accepts a job; ``train()`` runs it first).

    Returns:
        The model type's spec, the parsed hyperparameters and the data file.

    Raises:
        UnknownModelTypeError, HyperparameterError, EnvUnavailableError, DataFileError.
    """
    spec = get_spec(request.model_type)
    params = parse_params(request.model_type, request.hyperparams, fast=request.test_mode)
    try:
        settings.check_env(request.env)
    except ValueError as exc:
        raise EnvUnavailableError(str(exc)) from None
    path = resolve_data_source(request.data_source, settings, test_mode=request.test_mode)
    return spec, params, path


def _run_tags(request: TrainRequest, data: TrainingData, model_type: str) -> dict[str, str]:
    return {
        "model_type": model_type,
        "env": request.env,
        "test_mode": str(request.test_mode).lower(),
        "data_source": request.data_source,
        "data_fingerprint": data.fingerprint,
    }


def _split_params(data: TrainingData) -> dict[str, str | int]:
    return {
        "holdout_rule": data.split.rule,
        "holdout_cutoff": data.split.cutoff.isoformat(),
        "rows_train": len(data.split.train),
        "rows_holdout": len(data.split.holdout),
        "rows_dropped": data.records.dropped_rows,
    }


def _fit_in_run(
    request: TrainRequest,
    params: BaseModel,
    data: TrainingData,
    settings: Settings,
    stage: StageCallback,
    stop: StopToken,
) -> FitResult:
    """:func:`~bikecount.fitting.fit_and_evaluate` in the active run: the holdout metrics are
    logged once scored, then what the refit changed and what the deployed model knows."""
    fitted = fit_and_evaluate(
        data.frame,
        request.model_type,
        params,
        settings,
        stop,
        split=data.split,
        refit=request.refit,
        on_stage=stage,
        on_scored=mlflow.log_metrics,
    )
    if request.refit:  # e.g. refit_epochs: the epochs nn's early stopping chose
        mlflow.log_params(fitted.refit_changes)
    mlflow.log_params(
        {"refit": request.refit, "rows_fit": fitted.rows_fit, "trained_until": fitted.trained_until}
    )
    return fitted


def _pip_requirements(uses_torch: bool) -> list[str]:
    """Pinned explicitly: MLflow's own inference of requirements costs seconds per model."""
    packages = ["scikit-learn", "pandas", "numpy", "holidays", "cloudpickle"]
    if uses_torch:
        packages.append("torch")
    return [f"{name}=={package_version(name)}" for name in packages]


def _log_model(
    model: RecordModel, registered_name: str, holdout: pd.DataFrame, uses_torch: bool
) -> int:
    """Log the model to the active run and register it; return its version."""
    example = to_raw_records(holdout.head(5))
    signature = infer_signature(example, model.predict(holdout.head(5)))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=registered_name,
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(uses_torch),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    return int(info.registered_model_version)


def crown_if_earned(
    registry: Registry,
    request: TrainRequest,
    version: int,
    fitted: FitResult,
    data_fingerprint: str,
) -> ChampionDecision:
    """The champion decision (:func:`~bikecount.champion.decide_champion`) with the registry
    around it: the current champion read before it, the alias given after it when the new
    version earns it, the scores compared and the decision logged to the active run."""
    model_type = request.model_type
    challenger = Challenger(
        version=version,
        task=get_spec(model_type).task,
        test_mode=request.test_mode,
        evaluation=fitted.evaluation,
        metrics=fitted.metrics,
        split=fitted.split,
        data_fingerprint=data_fingerprint,
    )
    champion = current_champion(registry, model_type)
    decision = decide_champion(challenger, champion, partial(registry.load_version, model_type))
    if decision.compared:
        mlflow.log_metrics(decision.compared)
    if decision.crown:
        registry.set_champion(model_type, version)
        logger.info("%s v%d is the new champion: %s", model_type, version, decision.reason)
    mlflow.set_tag("champion_decision", decision.reason)
    return decision


def current_champion(registry: Registry, model_type: str) -> Champion | None:
    """The champion of ``model_type`` as its run describes it (None: there is none)."""
    current = registry.champion(model_type)
    if current is None:
        return None
    run = registry.get_run(str(current.run_id)).data
    return Champion(
        version=int(current.version),
        test_mode=run.tags.get("test_mode") == "true",
        trained_until=trained_until(run.params),
        metrics=dict(run.metrics),
        data_fingerprint=run.tags.get("data_fingerprint"),
        holdout_cutoff=run.params.get("holdout_cutoff"),
    )


def _train_result(
    request: TrainRequest,
    params: BaseModel,
    data: TrainingData,
    fitted: FitResult,
    run_id: str,
    model_name: str,
    version: int,
    decision: ChampionDecision,
    duration: float,
) -> TrainResult:
    return TrainResult(
        run_id=run_id,
        model_type=request.model_type,
        model_name=model_name,
        version=version,
        model_uri=f"models:/{model_name}/{version}",
        champion=decision.crown,
        champion_reason=decision.reason,
        metrics=fitted.metrics,
        params=params.model_dump(),
        data_path=str(data.path),
        rows_train=len(data.split.train),
        rows_holdout=len(data.split.holdout),
        rows_fit=fitted.rows_fit,
        trained_until=fitted.trained_until,
        refit=request.refit,
        rows_dropped=data.records.dropped_rows,
        drop_reasons=data.records.drop_reasons(),
        duration_seconds=duration,
    )
