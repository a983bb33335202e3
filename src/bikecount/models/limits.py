"""What a training would cost, estimated before it starts, and the limits it must stay under.

A request's hyperparameters can ask for a model far larger than the machine's memory or a fit
that runs for hours (a forest of unbounded trees, ten thousand boosting iterations, a network of
six 4,096-wide layers). :func:`check_training_limits` estimates, from the number of rows and the
hyperparameters alone, the size of the fitted model and the seconds its fit takes, and refuses
the training before any MLflow run exists when either is above its setting
(``BIKECOUNT_TRAIN_MAX_MODEL_MB``, ``BIKECOUNT_TRAIN_MAX_FIT_SECONDS``).

The estimates are upper bounds in the spirit of "how bad can it get": a tree gets as many leaves
as its rows and settings allow, a network runs every epoch. The constants below were measured on
the real Paris data (332,000 rows, ``benchmarks/limits.py`` prints estimates next to measured
figures) on the project's two shared cores; a faster machine only makes the time estimate more
cautious.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bikecount.config import Settings
from bikecount.features import FEATURE_COLUMNS
from bikecount.models.catalog import HyperparameterError, ParamsT, stops_early
from bikecount.models.param_types import ParamValue
from bikecount.models.trees import BoostingParams, ForestParams

if TYPE_CHECKING:
    from bikecount.models.nn_network import NNParams

# The feature pipeline, run once per fit: seconds per row.
FEATURE_SECONDS_PER_ROW = 5e-6
# A fitted tree node as pickled (scikit-learn's node record plus its value): about 72 bytes
# measured for forests and histogram boosting alike; rounded up.
BYTES_PER_TREE_NODE = 80
# Forest: seconds per (bootstrap row x candidate feature x tree level), for each tree.
FOREST_SECONDS_PER_UNIT = 1.5e-7
# Boosting: seconds per (row x iteration x level of a tree of max_leaf_nodes leaves).
BOOSTING_SECONDS_PER_UNIT = 1e-7
# Network: seconds per mini-batch (optimizer step, Python overhead) and per row and dense weight.
NN_SECONDS_PER_BATCH = 2.5e-3
NN_SECONDS_PER_ROW_WEIGHT = 1.3e-10
BYTES_PER_WEIGHT = 4  # float32
MEGABYTE = 1e6


class TrainingCostError(HyperparameterError):
    """A training whose estimated model size or fitting time is above its limit."""


@dataclass(frozen=True)
class TrainingCost:
    """The estimated size of the fitted model and the seconds its fit takes.

    ``drivers`` are the hyperparameters (with their values) the estimate grows with: the ones
    to lower.
    """

    model_type: str
    rows: int
    model_mb: float
    fit_seconds: float
    drivers: dict[str, ParamValue]
    # The rows of the refit on every row that follows the evaluation fit (None: no refit).
    refit_rows: int | None = None

    def describe(self) -> str:
        values = ", ".join(f"{name}={value}" for name, value in self.drivers.items())
        rows = f"{self.rows:,} rows"
        if self.refit_rows is not None:
            rows += f" then refitted on {self.refit_rows:,}"
        return (
            f"{self.model_type} with {values} on {rows}: a model of about "
            f"{self.model_mb:,.0f} MB fitted in about {self.fit_seconds:,.0f} s"
        )


def estimate_cost(model_type: str, params: BaseModel, rows: int) -> TrainingCost:
    """The estimated cost of fitting ``model_type`` with ``params`` on ``rows`` rows once (see
    :func:`estimate_training_cost` for a training's two fits)."""
    if model_type in ("rf", "rf_class"):
        size, seconds, drivers = _forest(_params_as(ForestParams, params), rows)
    elif model_type == "gbm":
        size, seconds, drivers = _boosting(_params_as(BoostingParams, params), rows)
    elif model_type == "nn":
        # Imported here: the network's hyperparameters live with it, and PyTorch comes with them.
        from bikecount.models.nn_network import NNParams

        size, seconds, drivers = _network(_params_as(NNParams, params), rows)
    elif model_type == "ensemble":
        size, seconds, drivers = _ensemble(params, rows)
    else:
        raise ValueError(f"no cost model for {model_type!r}")
    seconds += FEATURE_SECONDS_PER_ROW * rows
    return TrainingCost(model_type, rows, size / MEGABYTE, seconds, drivers)


def estimate_training_cost(
    model_type: str, params: BaseModel, rows: int, refit_rows: int | None = None
) -> TrainingCost:
    """The estimated cost of a whole training: the evaluation fit on ``rows`` rows, then, when
    ``refit_rows`` is given, the refit of the registered model on that many rows (the size is
    the larger model's, the seconds those of both fits)."""
    cost = estimate_cost(model_type, params, rows)
    if refit_rows is None:
        return cost
    refit = estimate_cost(model_type, refit_upper_bound(model_type, params), refit_rows)
    return TrainingCost(
        model_type,
        rows,
        max(cost.model_mb, refit.model_mb),
        cost.fit_seconds + refit.fit_seconds,
        cost.drivers,
        refit_rows,
    )


def refit_upper_bound(model_type: str, params: BaseModel) -> BaseModel:
    """The costliest hyperparameters the refit may get: ``nn`` refits for the epochs its early
    stopping chooses, at most ``max_epochs`` (and no early stopping of its own)."""
    if stops_early(model_type, params):
        return params.model_copy(update={"epochs": params.model_dump()["max_epochs"]})
    return params


def check_training_limits(
    model_type: str,
    params: BaseModel,
    rows: int,
    settings: Settings,
    refit_rows: int | None = None,
) -> TrainingCost:
    """Refuse, before any run exists, a training that cannot fit on ``rows`` rows or whose
    estimated cost (the evaluation fit, and the refit on ``refit_rows`` rows when given) is
    above the settings' limits.

    Returns:
        The estimate, when it is within the limits.

    Raises:
        HyperparameterError: the hyperparameters cannot fit this many rows (nn's validation
            slice would be empty, or all of them).
        TrainingCostError: naming the hyperparameters, the estimate and the limit it breaks.
    """
    check_fit_possible(model_type, params, rows)
    cost = estimate_training_cost(model_type, params, rows, refit_rows)
    broken = []
    if cost.model_mb > settings.train_max_model_mb:
        limit = settings.train_max_model_mb
        broken.append(f"model size above BIKECOUNT_TRAIN_MAX_MODEL_MB={limit:g}")
    if cost.fit_seconds > settings.train_max_fit_seconds:
        limit = settings.train_max_fit_seconds
        broken.append(f"fitting time above BIKECOUNT_TRAIN_MAX_FIT_SECONDS={limit:g}")
    if broken:
        raise TrainingCostError(
            f"training too costly: {cost.describe()}; {' and '.join(broken)}. Lower "
            f"{', '.join(cost.drivers)} (or train on fewer rows)"
        )
    return cost


def check_fit_possible(model_type: str, params: BaseModel, rows: int) -> None:
    """What would only fail inside ``fit``, checked from the number of rows.

    Raises:
        HyperparameterError: the ``nn`` early-stopping slice (``validation_fraction``) would
            hold no row, or every row.
    """
    if not stops_early(model_type, params):
        return  # a fixed epoch count holds no rows out
    fraction = params.model_dump()["validation_fraction"]
    held_out = int(round(rows * fraction))
    if not 0 < held_out < rows:
        raise HyperparameterError(
            f"validation_fraction={fraction:g} of {rows:,} training rows holds out {held_out} "
            "for early stopping: nn needs at least one row on each side; give more data or a "
            "larger validation_fraction"
        )


def _params_as(kind: type[ParamsT], params: BaseModel) -> ParamsT:
    """``params`` as the hyperparameters of their model type (as parse_params made them)."""
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params


def bootstrap_distinct(rows: int, fraction: float) -> float:
    """Expected distinct rows in a bootstrap sample of ``fraction * rows`` draws."""
    return rows * (1.0 - math.exp(-fraction))


Estimate = tuple[float, float, dict[str, ParamValue]]  # bytes, seconds, drivers


def _forest(params: ForestParams, rows: int) -> Estimate:
    fraction = params.max_samples or 1.0
    drawn = max(1.0, rows * fraction)
    leaves = bootstrap_distinct(rows, fraction) / params.min_samples_leaf
    if params.max_leaf_nodes is not None:
        leaves = min(leaves, params.max_leaf_nodes)
    if params.max_depth is not None:
        leaves = min(leaves, 2.0**params.max_depth)
    leaves = max(leaves, 1.0)
    features = max(1, math.ceil(params.max_features * len(FEATURE_COLUMNS)))
    trees = params.n_estimators
    size = trees * (2 * leaves - 1) * BYTES_PER_TREE_NODE
    levels = max(1.0, math.log2(leaves))
    seconds = trees * drawn * features * levels * FOREST_SECONDS_PER_UNIT
    drivers: dict[str, ParamValue] = {
        "n_estimators": params.n_estimators,
        "max_leaf_nodes": params.max_leaf_nodes,
        "max_depth": params.max_depth,
        "min_samples_leaf": params.min_samples_leaf,
        "max_samples": params.max_samples,
        "max_features": params.max_features,
    }
    return size, seconds, drivers


def _boosting(params: BoostingParams, rows: int) -> Estimate:
    leaves = max(1.0, min(params.max_leaf_nodes, rows / params.min_samples_leaf))
    iterations = params.max_iter
    size = iterations * (2 * leaves - 1) * BYTES_PER_TREE_NODE
    seconds = iterations * rows * max(1.0, math.log2(leaves)) * BOOSTING_SECONDS_PER_UNIT
    drivers: dict[str, ParamValue] = {
        "max_iter": params.max_iter,
        "max_leaf_nodes": params.max_leaf_nodes,
        "min_samples_leaf": params.min_samples_leaf,
    }
    return size, seconds, drivers


def _network(params: NNParams, rows: int) -> Estimate:
    # Imported here: the network's input widths live with it, and PyTorch comes with them.
    from bikecount.models.nn_inputs import COUNTER_INPUTS, SEASON_INPUTS

    dim = params.embedding_dim
    dense = _dense_weights(3 * dim + len(COUNTER_INPUTS), params.hidden_sizes)
    dense += _dense_weights(2 * dim + len(SEASON_INPUTS), params.season_hidden_sizes)
    # Embeddings: one row per counter code (a few hundred at most) and per hour and weekday.
    embeddings = (1024 + 24 + 7) * dim
    # Early stopping may run every epoch, then the refit as many again; a fixed epoch count
    # runs exactly that many, once.
    if params.epochs is not None:
        epochs = params.epochs
    else:
        epochs = params.max_epochs * (2 if params.refit else 1)
    batches = math.ceil(rows / params.batch_size)
    seconds = epochs * (batches * NN_SECONDS_PER_BATCH + rows * dense * NN_SECONDS_PER_ROW_WEIGHT)
    size = (dense + embeddings) * BYTES_PER_WEIGHT
    drivers: dict[str, ParamValue] = {
        "hidden_sizes": params.hidden_sizes,
        "season_hidden_sizes": params.season_hidden_sizes,
        "embedding_dim": params.embedding_dim,
        "max_epochs": params.max_epochs,
        "batch_size": params.batch_size,
    }
    return size, seconds, drivers


def _ensemble(params: BaseModel, rows: int) -> Estimate:
    """The members' costs added up: each is fitted on every row, and each is kept."""
    # Imported here: the ensemble's members are model types of the catalogue, as this module is.
    from bikecount.models.ensemble import member_params

    size = seconds = 0.0
    drivers: dict[str, ParamValue] = {}
    for member, own in member_params(params).items():
        cost = estimate_cost(member, own, rows)
        size += cost.model_mb * MEGABYTE
        # The features are made once per member: estimate_cost counted them already.
        seconds += cost.fit_seconds - FEATURE_SECONDS_PER_ROW * rows
        drivers.update({f"{member}_{name}": value for name, value in cost.drivers.items()})
    return size, seconds, drivers


def _dense_weights(width: int, hidden_sizes: tuple[int, ...]) -> int:
    """Weights and biases of dense layers ``width -> hidden_sizes... -> 1``."""
    total = 0
    for size in (*hidden_sizes, 1):
        total += width * size + size
        width = size
    return total
