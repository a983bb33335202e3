"""train(): fit a model on a temporal split, score its holdout, log it to MLflow, register it,
and crown it champion only when it earns it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib.metadata import version as package_version
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from bikecount.cleaning import drop_outages
from bikecount.config import Env, Settings
from bikecount.data.datasets import resolve_data_source
from bikecount.data.io import read_records
from bikecount.evaluate import SELECTION_METRIC, is_better, score_model, split_holdout
from bikecount.fingerprint import file_fingerprint
from bikecount.isolated_fit import fit_isolated
from bikecount.models import build_model, get_spec, parse_params
from bikecount.models.limits import check_training_limits
from bikecount.records import parse_records, to_raw_records
from bikecount.registry import (
    champion_version,
    configure_tracking,
    ensure_experiment,
    load_version,
    require_tracking,
    set_champion,
)
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
    spec = get_spec(request.model_type)
    params = parse_params(request.model_type, request.hyperparams, fast=request.test_mode)
    path = resolve_data_source(request.data_source, settings, test_mode=request.test_mode)
    require_tracking(settings)

    stage(f"reading {path}")
    parsed = parse_records(read_records(path), require_count=True)
    if parsed.frame.empty:
        raise ValueError(f"{path}: no valid records ({parsed.dropped_rows} rows dropped)")
    split = split_holdout(parsed.frame, settings.holdout_days, start=request.holdout_from)
    check_training_limits(request.model_type, params, len(split.train), settings)
    stop.check("starting")

    configure_tracking(settings)
    experiment_id = ensure_experiment(settings, request.env)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=request.model_type) as run,
        marking_stopped_run(),
    ):
        mlflow.set_tags({**_run_tags(request, path, spec.name), **request.tags})
        mlflow.log_params({**params.model_dump(), **_split_params(split, parsed.dropped_rows)})
        stage(f"fitting {spec.description} on {len(split.train):,} records")
        model = build_model(request.model_type, params, settings.seed)
        fitted_on = drop_outages(split.train, settings.outage_hours)
        mlflow.log_param("rows_outage_dropped", len(split.train) - len(fitted_on))
        model = fit_isolated(model, fitted_on, fitted_on["count"].to_numpy(), stop)
        stage(f"scoring on the holdout ({len(split.holdout):,} records, {split.rule})")
        metrics = score_model(model, spec.task, split.holdout)
        mlflow.log_metrics(metrics)
        # The last stop: once registering has begun, the training finishes.
        stop.check("about to register the model")
        stage("logging and registering the model")
        info = _log_model(model, request.model_type, split.holdout, spec.torch)
        version = int(info.registered_model_version)
        stage("comparing with the champion")
        crowned, reason = decide_champion(request, version, metrics, split.holdout)
        mlflow.set_tag("champion_decision", reason)

    return TrainResult(
        run_id=run.info.run_id,
        model_type=request.model_type,
        model_name=spec.registered_name,
        version=version,
        model_uri=f"models:/{spec.registered_name}/{version}",
        champion=crowned,
        champion_reason=reason,
        metrics=metrics,
        params=params.model_dump(),
        data_path=str(path),
        rows_train=len(split.train),
        rows_holdout=len(split.holdout),
        rows_dropped=parsed.dropped_rows,
        drop_reasons=parsed.drop_reasons(),
        duration_seconds=round(time.perf_counter() - started, 2),
    )


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


def _log_model(model: Any, model_type: str, holdout: pd.DataFrame, uses_torch: bool) -> Any:
    example = to_raw_records(holdout.head(5))
    signature = infer_signature(example, model.predict(holdout.head(5)))
    return mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=get_spec(model_type).registered_name,
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(uses_torch),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )


def decide_champion(
    request: TrainRequest, version: int, metrics: dict[str, float], holdout: pd.DataFrame
) -> tuple[bool, str]:
    """Give the new version the champion alias when it earns it; return (crowned, why).

    It is crowned when there is no champion, when the champion is a test-mode model and the new
    one is not, or when it beats the champion on the new run's holdout (both scored on the same
    rows). A test-mode run never replaces a champion trained on full data.
    """
    client = MlflowClient()
    spec = get_spec(request.model_type)
    current = champion_version(client, request.model_type)
    if current is None:
        return _crown(client, request.model_type, version, "no champion yet")
    champion_test_mode = client.get_run(current.run_id).data.tags.get("test_mode") == "true"
    if request.test_mode and not champion_test_mode:
        return False, f"test-mode run; champion v{current.version} was trained on full data"
    if champion_test_mode and not request.test_mode:
        return _crown(client, request.model_type, version, "replaces a test-mode champion")
    metric, _ = SELECTION_METRIC[spec.task]
    try:
        incumbent = score_model(
            load_version(request.model_type, int(current.version)), spec.task, holdout
        )
    except Exception as exc:  # a champion that cannot even be scored is no champion
        logger.warning("champion v%s could not be scored: %s", current.version, exc)
        return _crown(client, request.model_type, version, f"champion v{current.version} unusable")
    new, old = metrics[metric], incumbent[metric]
    mlflow.log_metric(f"champion_{metric}_same_holdout", old)
    if is_better(metric, new, old):
        return _crown(client, request.model_type, version, f"{metric} {new:.4g} beats {old:.4g}")
    return False, f"{metric} {new:.4g} does not beat champion v{current.version} ({old:.4g})"


def _crown(client: MlflowClient, model_type: str, version: int, reason: str) -> tuple[bool, str]:
    set_champion(client, model_type, version)
    logger.info("%s v%d is the new champion: %s", model_type, version, reason)
    return True, reason
