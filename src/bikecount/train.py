"""train(): fit a model on a temporal split, score its holdout, refit it on every row, log it to
MLflow, register it, and crown it champion only when it earns it.

The model that is registered and served learns from every row, holdout included: the latest days
are what a forecast needs most. Its holdout metrics come from the evaluation fit, made without
the holdout, so they stay honest; ``trained_until`` says what the served model knows, and the
champion decision never scores a model on rows it was fitted on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from pydantic import BaseModel

from bikecount.cleaning import drop_outages
from bikecount.config import Env, Settings
from bikecount.data.datasets import resolve_data_source
from bikecount.data.io import read_records
from bikecount.evaluate import (
    MIN_HOLDOUT_ROWS,
    SELECTION_METRIC,
    HoldoutSplit,
    is_better,
    score_model,
    split_holdout,
)
from bikecount.fingerprint import file_fingerprint
from bikecount.isolated_fit import fit_isolated
from bikecount.models import ModelSpec, build_model, get_spec, parse_params
from bikecount.models.limits import check_training_limits
from bikecount.records import parse_records, to_raw_records
from bikecount.registry import Registry, trained_until
from bikecount.stopping import StopToken, marking_stopped_run

logger = logging.getLogger(__name__)

StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class TrainRequest:
    model_type: str
    data_source: str = "reference"
    env: Env = "dev"
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
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
    params: dict[str, Any]
    data_path: str
    rows_train: int
    rows_holdout: int
    rows_fit: int
    trained_until: str
    refit: bool
    rows_dropped: int
    drop_reasons: dict[str, int]
    duration_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    request: TrainRequest,
    settings: Settings,
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
        RecordError, ValueError, TrainingStoppedError.
    """
    stop = stop or StopToken(settings.train_time_limit_seconds)
    stage = on_stage or (lambda message: logger.info(message))
    started = time.perf_counter()
    spec, params, path = validate_train_request(request, settings)
    registry = Registry(settings)
    registry.check_reachable()  # within seconds, not MLflow's minutes of retries

    stage(f"reading {path}")
    parsed = parse_records(read_records(path), require_count=True)
    if parsed.frame.empty:
        raise ValueError(f"{path}: no valid records ({parsed.dropped_rows} rows dropped)")
    split = split_holdout(parsed.frame, settings.holdout_days, start=request.holdout_from)
    refit_rows = len(parsed.frame) if request.refit else None
    check_training_limits(request.model_type, params, len(split.train), settings, refit_rows)
    stop.check("starting")

    registry.use_for_runs()
    experiment_id = registry.training_experiment(request.env)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=request.model_type) as run,
        marking_stopped_run(),
    ):
        mlflow.set_tags({**_run_tags(request, path, spec.name), **request.tags})
        mlflow.log_params({**params.model_dump(), **_split_params(split, parsed.dropped_rows)})
        stage(f"fitting {spec.description} on {len(split.train):,} records")
        evaluation = fit_records(request.model_type, params, split.train, settings, stop)
        stage(f"scoring on the holdout ({len(split.holdout):,} records, {split.rule})")
        metrics = score_model(evaluation, spec.task, split.holdout)
        mlflow.log_metrics(metrics)
        deployed, fitted = evaluation, split.train
        if request.refit:
            stage(f"refitting on all {len(parsed.frame):,} records (holdout included)")
            refit_params = deployment_params(request.model_type, params, evaluation)
            deployed = fit_records(
                request.model_type, refit_params, parsed.frame, settings, stop, "refitting"
            )
            fitted = parsed.frame
            changed = {
                f"refit_{name}": value
                for name, value in refit_params.model_dump().items()
                if value != getattr(params, name)
            }
            mlflow.log_params(changed)  # e.g. refit_epochs: the epochs nn's early stopping chose
        trained_until = fitted["timestamp"].max().isoformat()
        mlflow.log_params(
            {"refit": request.refit, "rows_fit": len(fitted), "trained_until": trained_until}
        )
        # The last stop: once registering has begun, the training finishes.
        stop.check("about to register the model")
        stage("logging and registering the model")
        info = _log_model(
            deployed, registry.registered_name(request.model_type), split.holdout, spec.torch
        )
        version = int(info.registered_model_version)
        stage("comparing with the champion")
        challenger = Challenger(version, evaluation, metrics, split, file_fingerprint(path))
        crowned, reason = decide_champion(registry, request, challenger)
        mlflow.set_tag("champion_decision", reason)

    return TrainResult(
        run_id=run.info.run_id,
        model_type=request.model_type,
        model_name=registry.registered_name(request.model_type),
        version=version,
        model_uri=f"models:/{registry.registered_name(request.model_type)}/{version}",
        champion=crowned,
        champion_reason=reason,
        metrics=metrics,
        params=params.model_dump(),
        data_path=str(path),
        rows_train=len(split.train),
        rows_holdout=len(split.holdout),
        rows_fit=len(fitted),
        trained_until=trained_until,
        refit=request.refit,
        rows_dropped=parsed.dropped_rows,
        drop_reasons=parsed.drop_reasons(),
        duration_seconds=round(time.perf_counter() - started, 2),
    )


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


def fit_records(
    model_type: str,
    params: BaseModel,
    records: pd.DataFrame,
    settings: Settings,
    stop: StopToken | None = None,
    stage: str = "fitting",
) -> Any:
    """A fresh model of ``model_type`` fitted on canonical records, counter outages dropped.

    The one fitting step of ``bikecount train``, ``POST /train`` and ``bikecount backtest``.
    With ``stop``, the fit runs in a child process that is killed at once when the token says
    stop (cancel, time limit; see :mod:`bikecount.isolated_fit`; ``stage`` names the fit in
    the stop's message); without, in this process.
    """
    model = build_model(model_type, params, settings.seed)
    fitted_on = drop_outages(records.sort_values("timestamp", kind="stable"), settings.outage_hours)
    if stop is not None:
        return fit_isolated(model, fitted_on, fitted_on["count"].to_numpy(), stop, stage)
    model.fit(fitted_on, fitted_on["count"].to_numpy())
    return model


def deployment_params(model_type: str, params: BaseModel, evaluation: Any) -> BaseModel:
    """The hyperparameters of the refit on every row: the evaluated ones, except that ``nn``
    trains for exactly the epochs its early stopping chose (no rows left to stop on)."""
    if get_spec(model_type).torch and getattr(params, "epochs", None) is None:
        network = evaluation.regressor_.named_steps["model"]
        return params.model_copy(update={"epochs": int(network.best_epoch_)})
    return params


def fit_for_deployment(
    model_type: str, params: BaseModel, records: pd.DataFrame, settings: Settings
) -> Any:
    """The model ``bikecount train`` would register for these records, without MLflow.

    Models whose refit needs nothing from the evaluation fit (trees) are fitted once, on every
    row; ``nn`` first chooses its epoch count on the temporal holdout, as ``train`` does.
    """
    if not get_spec(model_type).torch or getattr(params, "epochs", None) is not None:
        return fit_records(model_type, params, records, settings)
    split = split_holdout(records, settings.holdout_days)
    evaluation = fit_records(model_type, params, split.train, settings)
    refit_params = deployment_params(model_type, params, evaluation)
    return fit_records(model_type, refit_params, records, settings)


def _run_tags(request: TrainRequest, path: Any, model_type: str) -> dict[str, str]:
    return {
        "model_type": model_type,
        "env": request.env,
        "test_mode": str(request.test_mode).lower(),
        "data_source": request.data_source,
        "data_fingerprint": file_fingerprint(path),
    }


def _split_params(split: Any, dropped: int) -> dict[str, Any]:
    return {
        "holdout_rule": split.rule,
        "holdout_cutoff": split.cutoff.isoformat(),
        "rows_train": len(split.train),
        "rows_holdout": len(split.holdout),
        "rows_dropped": dropped,
    }


def _pip_requirements(uses_torch: bool) -> list[str]:
    """Pinned explicitly: MLflow's own inference of requirements costs seconds per model."""
    packages = ["scikit-learn", "pandas", "numpy", "holidays", "cloudpickle"]
    if uses_torch:
        packages.append("torch")
    return [f"{name}=={package_version(name)}" for name in packages]


def _log_model(model: Any, registered_name: str, holdout: pd.DataFrame, uses_torch: bool) -> Any:
    example = to_raw_records(holdout.head(5))
    signature = infer_signature(example, model.predict(holdout.head(5)))
    return mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=registered_name,
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(uses_torch),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )


@dataclass
class Challenger:
    """A new version and what judges it: its evaluation fit, holdout metrics and split."""

    version: int
    evaluation: Any
    metrics: dict[str, float]
    split: HoldoutSplit
    data_fingerprint: str


def decide_champion(
    registry: Registry, request: TrainRequest, challenger: Challenger
) -> tuple[bool, str]:
    """Give the new version the champion alias when it earns it; return (crowned, why).

    It is crowned when there is no champion, when the champion is a test-mode model and the new
    one is not, or when it beats the champion fairly: no model is judged on rows it was fitted
    on (see :func:`compare_with_champion`). A test-mode run never replaces a champion trained on
    full data.
    """
    current = registry.champion(request.model_type)
    if current is None:
        return _crown(registry, request.model_type, challenger.version, "no champion yet")
    champion_run = registry.get_run(str(current.run_id))
    champion_test_mode = champion_run.data.tags.get("test_mode") == "true"
    if request.test_mode and not champion_test_mode:
        return False, f"test-mode run; champion v{current.version} was trained on full data"
    if champion_test_mode and not request.test_mode:
        return _crown(
            registry, request.model_type, challenger.version, "replaces a test-mode champion"
        )
    try:
        wins, reason = compare_with_champion(
            registry, request.model_type, challenger, int(current.version), champion_run
        )
    except Exception as exc:  # a champion that cannot even be scored is no champion
        logger.warning("champion v%s could not be scored: %s", current.version, exc)
        reason = f"champion v{current.version} unusable"
        return _crown(registry, request.model_type, challenger.version, reason)
    if wins:
        return _crown(registry, request.model_type, challenger.version, reason)
    return False, reason


def compare_with_champion(
    registry: Registry, model_type: str, challenger: Challenger, champion: int, champion_run: Any
) -> tuple[bool, str]:
    """Whether the challenger beats the champion, judged on rows neither was fitted on.

    1. The challenger's holdout rows after the champion's ``trained_until``: the champion (as
       served) and the challenger's evaluation fit are both scored on them.
    2. Else, when the champion's own evaluation fit was scored on the very same holdout (same
       file, same cutoff), the two logged holdout metrics are compared.
    3. Else there is no fair comparison, and the champion stays.
    """
    metric, _ = SELECTION_METRIC[get_spec(model_type).task]
    params, tags = champion_run.data.params, champion_run.data.tags
    holdout = challenger.split.holdout
    until = trained_until(params)
    unseen = holdout if until is None else holdout[holdout["timestamp"] > until]
    if len(unseen) >= MIN_HOLDOUT_ROWS:
        task = get_spec(model_type).task
        new = score_model(challenger.evaluation, task, unseen)[metric]
        old = score_model(registry.load_version(model_type, champion), task, unseen)[metric]
        _log_comparison(metric, new, old)
        rows = (
            f"the {len(unseen):,} holdout rows after champion v{champion}'s trained_until "
            f"({until.isoformat()})"
            if until is not None and len(unseen) < len(holdout)
            else f"the {len(unseen):,} holdout rows, which champion v{champion} never saw"
        )
        return _verdict(metric, new, old, champion, rows)
    same_holdout = (
        tags.get("data_fingerprint") == challenger.data_fingerprint
        and params.get("holdout_cutoff") == challenger.split.cutoff.isoformat()
        and metric in champion_run.data.metrics
    )
    if same_holdout:
        old = float(champion_run.data.metrics[metric])
        _log_comparison(metric, challenger.metrics[metric], old)
        rows = (
            f"both evaluation fits on the same {len(holdout):,} holdout rows "
            f"(after {challenger.split.cutoff.isoformat()} of the same file)"
        )
        return _verdict(metric, challenger.metrics[metric], old, champion, rows)
    return False, (
        f"no fair comparison: champion v{champion} was fitted on this holdout "
        f"(trained until {until.isoformat() if until is not None else 'unknown'}) and was "
        "evaluated on another one; train on data that goes past its trained_until, or on its file"
    )


def _log_comparison(metric: str, new: float, old: float) -> None:
    mlflow.log_metrics({f"champion_{metric}_compared": old, f"challenger_{metric}_compared": new})


def _verdict(metric: str, new: float, old: float, champion: int, rows: str) -> tuple[bool, str]:
    if is_better(metric, new, old):
        return True, f"{metric} {new:.4g} beats champion v{champion} ({old:.4g}) on {rows}"
    return False, f"{metric} {new:.4g} does not beat champion v{champion} ({old:.4g}) on {rows}"


def _crown(registry: Registry, model_type: str, version: int, reason: str) -> tuple[bool, str]:
    registry.set_champion(model_type, version)
    logger.info("%s v%d is the new champion: %s", model_type, version, reason)
    return True, reason
