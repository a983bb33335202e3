"""Fitting as a pure step: fit on a temporal split, score the holdout, refit on every row.

:func:`fit_and_evaluate` is the fitting of ``bikecount train`` and ``POST /train`` (through
``train()``, which reads the file, guards the cost, and logs and registers around it) and of
``bikecount backtest`` (through :func:`fit_for_deployment`). It reads no file and talks to
neither MLflow nor the registry: what it learns comes back in a :class:`FitResult`, and what the
caller wants to hear on the way (stages, the holdout metrics as soon as they exist) through
callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel
from sklearn.compose import TransformedTargetRegressor

from bikecount.cleaning import drop_outages
from bikecount.config import Settings
from bikecount.evaluate import HoldoutSplit, score_model, split_holdout
from bikecount.intervals import attach_calibration, calibrate
from bikecount.isolated_fit import fit_isolated
from bikecount.models import build_model, get_spec, stops_early
from bikecount.models.param_types import ParamValue
from bikecount.models.protocol import RecordModel
from bikecount.records import COUNT_COLUMN, TIMESTAMP_COLUMN
from bikecount.stopping import StopToken

logger = logging.getLogger(__name__)

StageCallback = Callable[[str], None]
MetricsCallback = Callable[[dict[str, float]], object]  # what it returns is ignored


@dataclass
class FitResult:
    """What a fit on a temporal split learned.

    Attributes:
        model: the deployable model: refitted on every row, or the evaluation fit (no refit).
        evaluation: the fit without the holdout; its holdout ``metrics`` are honest.
        split: the temporal split (training rows, holdout rows, cutoff, rule).
        metrics: the evaluation fit's metrics on the holdout.
        refit_changes: the refit's hyperparameters that differ from the evaluated ones, as
            ``refit_<name>`` (e.g. ``refit_epochs``, the epochs nn's early stopping chose).
        rows_fit: the rows ``model`` was fitted on (outages included).
        trained_until: the last timestamp ``model`` was fitted on (ISO 8601).
    """

    model: RecordModel
    evaluation: RecordModel
    split: HoldoutSplit
    metrics: dict[str, float]
    refit_changes: dict[str, ParamValue]
    rows_fit: int
    trained_until: str


def fit_and_evaluate(
    frame: pd.DataFrame,
    model_type: str,
    params: BaseModel,
    settings: Settings,
    stop: StopToken | None = None,
    *,
    split: HoldoutSplit | None = None,
    refit: bool = True,
    on_stage: StageCallback | None = None,
    on_scored: MetricsCallback | None = None,
) -> FitResult:
    """Fit ``model_type`` without the holdout, score it on the holdout, then refit it on every
    row for deployment (the latest days are what a forecast needs most).

    Args:
        frame: canonical records with counts, in any order.
        model_type, params: the model type and its parsed hyperparameters.
        settings: the seed, the outage rule and the holdout days.
        stop: checked while each model fits (in a child process); None fits in this process.
        split: the temporal split of ``frame``, when the caller made it already (``train()``
            guards the cost with it); by default the settings' ``holdout_days``.
        refit: False deploys the evaluation fit (faster; it never saw the holdout days).
        on_stage: told each stage as it starts.
        on_scored: given the holdout metrics as soon as they exist, before the refit.

    Raises:
        ValueError: no temporal holdout is possible; TrainingStoppedError: ``stop`` said stop.
    """
    stage = on_stage or logger.info
    spec = get_spec(model_type)
    split = split if split is not None else split_holdout(frame, settings.holdout_days)
    stage(f"fitting {spec.description} on {len(split.train):,} records")
    evaluation = fit_records(model_type, params, split.train, settings, stop)
    stage(f"scoring on the holdout ({len(split.holdout):,} records, {split.rule})")
    metrics = score_model(evaluation, spec.task, split.holdout)
    if on_scored is not None:
        on_scored(metrics)
    model, fitted = evaluation, split.train
    changes: dict[str, ParamValue] = {}
    if refit:
        stage(f"refitting on all {len(frame):,} records (holdout included)")
        refit_params = deployment_params(model_type, params, evaluation)
        model = fit_records(model_type, refit_params, frame, settings, stop, "refitting")
        fitted, changes = frame, _changed_params(params, refit_params)
    if spec.task == "regression":
        attach_holdout_calibration(model, evaluation, split.holdout)
    trained_until = fitted[TIMESTAMP_COLUMN].max().isoformat()
    return FitResult(model, evaluation, split, metrics, changes, len(fitted), trained_until)


def attach_holdout_calibration(
    model: RecordModel, evaluation: RecordModel, holdout: pd.DataFrame
) -> None:
    """Give ``model`` the interval calibration of the evaluation fit's holdout residuals:
    forecasts of counts it was not fitted on (see :mod:`bikecount.intervals`). The refit saw
    those counts, so its own residuals would be too small to be honest.

    Measured month ahead on real counts (docs/forecasting.md), the holdout's residuals carry
    the bias of a model that had not seen the holdout's days, which the refit learns away: only
    their spread is kept (centred), in one group (a shift of the coming weeks moves busy hours
    as much as quiet ones in log1p units, so level groups under-cover them).
    """
    counts = holdout[COUNT_COLUMN].to_numpy(float)
    calibration = calibrate(
        counts, evaluation.predict(holdout), source="holdout", groups=1, centred=True
    )
    attach_calibration(model, calibration)
    if model is not evaluation:
        attach_calibration(evaluation, calibration)


def _changed_params(params: BaseModel, refit_params: BaseModel) -> dict[str, ParamValue]:
    return {
        f"refit_{name}": value
        for name, value in refit_params.model_dump().items()
        if value != getattr(params, name)
    }


def fit_records(
    model_type: str,
    params: BaseModel,
    records: pd.DataFrame,
    settings: Settings,
    stop: StopToken | None = None,
    stage: str = "fitting",
) -> RecordModel:
    """A fresh model of ``model_type`` fitted on canonical records, counter outages dropped.

    The one fitting step of ``bikecount train``, ``POST /train`` and ``bikecount backtest``.
    With ``stop``, the fit runs in a child process that is killed at once when the token says
    stop (cancel, time limit; see :mod:`bikecount.isolated_fit`; ``stage`` names the fit in
    the stop's message); without, in this process.
    """
    model = build_model(model_type, params, settings.seed)
    fitted_on = drop_outages(
        records.sort_values(TIMESTAMP_COLUMN, kind="stable"), settings.outage_hours
    )
    counts = fitted_on[COUNT_COLUMN].to_numpy()
    if stop is not None:
        return fit_isolated(model, fitted_on, counts, stop, stage)
    model.fit(fitted_on, counts)
    return model


def deployment_params(model_type: str, params: BaseModel, evaluation: RecordModel) -> BaseModel:
    """The hyperparameters of the refit on every row: the evaluated ones, except that ``nn``
    trains for exactly the epochs its early stopping chose (no rows left to stop on)."""
    if stops_early(model_type, params):
        return params.model_copy(update={"epochs": chosen_epochs(evaluation)})
    return params


def chosen_epochs(model: RecordModel) -> int:
    """The epochs an ``nn`` model's early stopping chose: its network is the last step of the
    pipeline that its target wrapper fitted (:func:`~bikecount.models.neural.build_nn_model`).

    Raises:
        TypeError: ``model`` is not an ``nn`` model.
    """
    # Imported here: only nn needs it, and it imports PyTorch.
    from bikecount.models.neural import TorchRegressor

    if isinstance(model, TransformedTargetRegressor):
        network = model.regressor_.named_steps["model"]
        if isinstance(network, TorchRegressor):
            return int(network.best_epoch_)
    raise TypeError(f"{type(model).__name__} is not an nn model: it chose no epoch count")


def fit_for_deployment(
    model_type: str, params: BaseModel, records: pd.DataFrame, settings: Settings
) -> RecordModel:
    """The model ``bikecount train`` would register for these records, without MLflow.

    Models whose refit needs nothing from the evaluation fit (trees) are fitted once, on every
    row; ``nn`` first chooses its epoch count on the temporal holdout, as ``train`` does.
    """
    if not stops_early(model_type, params):
        return fit_records(model_type, params, records, settings)
    return fit_and_evaluate(records, model_type, params, settings).model
