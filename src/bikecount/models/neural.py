"""The ``nn`` model: a small PyTorch network behind scikit-learn's estimator contract.

:class:`TorchRegressor` takes the feature frame of :mod:`bikecount.features` (rows oldest first)
and a target: log1p(count) in the full model that :func:`build_nn_model` assembles.

The network adds up two parts. The counter part sees the counter (embedding, level, weekly
profile, place) and the time of day and week (hour and weekday embeddings, weekend, public and
school holiday flags), not the season; the season part sees the cyclic day of year and month
with the time of day and week, not the counter. So season effects (lockdowns, curfews, weather)
are shared by all counters, a counter once out of order cannot teach the network that it stays
broken, and school holidays weigh the same in every season. One year of data cannot tell a
season from a trend, so a day of the year (or month) unseen in training takes the last one seen
before it: a forecast keeps the latest season it knows rather than extrapolating the cycle.

Training stops early on the most recent rows (as a forecast is judged), then, by default, a
fresh network is trained on all rows for the chosen number of epochs: those recent rows are
what a forecast needs most. (No ``parametrize_with_checks``: the estimator needs the named
feature columns with their meaning, an hour in 0..23 or a counter code, not arbitrary numbers.)
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from torch import nn

from bikecount.features import FEATURE_COLUMNS, build_feature_pipeline
from bikecount.models.param_types import PARAMS_CONFIG, Bool, Float, Int
from bikecount.models.targets import log_count_regressor

logger = logging.getLogger(__name__)

# Numeric inputs: these feature columns as they are, then sin/cos of the cyclic ones.
COUNTER_COLUMNS = ("counter_level", "profile_level", "lat", "lon")
PLAIN_INPUTS = (*COUNTER_COLUMNS, "is_weekend", "is_holiday", "is_school_holiday")
CYCLE_PERIODS = {"hour": 24.0, "day_of_year": 365.25, "month": 12.0}
NUMERIC_INPUTS = PLAIN_INPUTS + tuple(f"{col}_{f}" for col in CYCLE_PERIODS for f in ("sin", "cos"))
# Seasonal columns and the size of their lookup table (values 0..size-1), see carry_forward_table.
SEASON_SIZES = {"day_of_year": 367, "month": 13}
# Which numeric inputs each part of the network sees (see the module docstring).
WEEK_INPUTS = ("is_weekend", "is_holiday", "hour_sin", "hour_cos")
COUNTER_INPUTS = (*COUNTER_COLUMNS, "is_school_holiday", *WEEK_INPUTS)
SEASON_INPUTS = (*WEEK_INPUTS, "day_of_year_sin", "day_of_year_cos", "month_sin", "month_cos")
USED_COLUMNS = ("counter_code", "weekday", *PLAIN_INPUTS, *CYCLE_PERIODS)
PREDICT_BATCH_ROWS = 65_536
# One thread: these small matrices gain little from two, and the cores are shared with other
# work, where waiting threads slow everyone down. It also keeps results identical across hosts.
N_THREADS = 1

Sizes = tuple[Annotated[Int, Field(ge=1, le=4096)], ...]


class NNParams(BaseModel):
    """Hyperparameters of the ``nn`` model; the defaults fit the Paris data in about a minute."""

    model_config = PARAMS_CONFIG

    embedding_dim: Int = Field(default=16, ge=1, le=256)
    hidden_sizes: Sizes = Field(default=(128, 64), min_length=1, max_length=6)
    # The season part is kept small: a smooth season persists better than a detailed one.
    season_hidden_sizes: Sizes = Field(default=(32, 16), min_length=1, max_length=6)
    dropout: Float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: Float = Field(default=5e-3, gt=0.0, le=1.0)
    weight_decay: Float = Field(default=1e-5, ge=0.0, le=1.0)
    batch_size: Int = Field(default=512, ge=8, le=262_144)
    max_epochs: Int = Field(default=40, ge=1, le=1000)
    patience: Int = Field(default=5, ge=1, le=100)
    validation_fraction: Float = Field(default=0.1, gt=0.0, le=0.5)
    refit: Bool = True
    # Train for exactly this many epochs on every row, with no early stopping: the refit of a
    # registered model, after its evaluation fit chose the epoch count.
    epochs: Int | None = Field(default=None, ge=1, le=1000)


def _mlp(width: int, hidden_sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Dense ReLU layers with dropout, then one linear output."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class _Network(nn.Module):
    """Counter part plus season part, each an MLP over embeddings and numeric inputs."""

    def __init__(self, n_codes: int, params: NNParams) -> None:
        super().__init__()
        dim = params.embedding_dim
        self.counter_embedding = nn.Embedding(n_codes, dim)
        self.hour_embedding = nn.Embedding(24, dim)
        self.weekday_embedding = nn.Embedding(7, dim)
        self.counter_columns = [NUMERIC_INPUTS.index(name) for name in COUNTER_INPUTS]
        self.season_columns = [NUMERIC_INPUTS.index(name) for name in SEASON_INPUTS]
        width = 3 * dim + len(COUNTER_INPUTS)
        self.counter_mlp = _mlp(width, params.hidden_sizes, params.dropout)
        width = 2 * dim + len(SEASON_INPUTS)
        self.season_mlp = _mlp(width, params.season_hidden_sizes, params.dropout)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        hour = self.hour_embedding(codes[:, 1])
        weekday = self.weekday_embedding(codes[:, 2])
        counter = self.counter_embedding(codes[:, 0])
        place = torch.cat([counter, hour, weekday, numeric[:, self.counter_columns]], dim=1)
        season = torch.cat([hour, weekday, numeric[:, self.season_columns]], dim=1)
        return (self.counter_mlp(place) + self.season_mlp(season)).squeeze(1)


@contextmanager
def _torch_threads(n_threads: int) -> Iterator[None]:
    """Use at most ``n_threads`` intra-op threads inside the block, then restore the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n_threads, previous)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _feature_frame(X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """The feature columns as a frame; a bare array is read in ``FEATURE_COLUMNS`` order."""
    if not isinstance(X, pd.DataFrame):
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] != len(FEATURE_COLUMNS):
            raise ValueError(
                f"TorchRegressor needs the {len(FEATURE_COLUMNS)} columns {FEATURE_COLUMNS}, "
                f"got an array of shape {array.shape}"
            )
        X = pd.DataFrame(array, columns=list(FEATURE_COLUMNS))
    missing = [col for col in USED_COLUMNS if col not in X.columns]
    if missing:
        raise ValueError(f"TorchRegressor needs the feature columns {missing}")
    return X


def carry_forward_table(seen: np.ndarray, size: int) -> np.ndarray:
    """A lookup table over 0..size-1: seen values map to themselves, others to the last seen
    value before them, going round the cycle (before the first seen value, the last one counts).
    """
    values = np.unique(np.clip(np.asarray(seen, dtype=np.int64), 0, size - 1))
    if values.size == 0:
        return np.arange(size, dtype=np.float64)
    latest = np.full(size, -1, dtype=np.int64)
    latest[values] = values
    latest = np.maximum.accumulate(latest)
    latest[latest < 0] = values[-1]
    return latest.astype(np.float64)


def _raw_numeric(frame: pd.DataFrame, season_maps: dict[str, np.ndarray]) -> np.ndarray:
    """``NUMERIC_INPUTS`` before standardisation, seasonal values first mapped to seen ones."""
    columns = [frame[col].to_numpy(dtype=np.float64) for col in PLAIN_INPUTS]
    for col, period in CYCLE_PERIODS.items():
        values = frame[col].to_numpy(dtype=np.float64)
        if col in season_maps:
            table = season_maps[col]
            values = table[np.clip(values, 0, len(table) - 1).astype(np.int64)]
        angle = 2.0 * np.pi * values / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.column_stack(columns)


@dataclass
class _Scaling:
    """How inputs and target are encoded, learned from the training rows."""

    n_codes: int  # known counter codes 0..K-1, then the spare code K for any other
    season_maps: dict[str, np.ndarray]
    numeric_mean: np.ndarray
    numeric_scale: np.ndarray
    target_mean: float
    target_scale: float
    target_range: tuple[float, float]

    @classmethod
    def learn(cls, frame: pd.DataFrame, target: np.ndarray) -> _Scaling:
        season_maps = {
            col: carry_forward_table(frame[col].to_numpy(), size)
            for col, size in SEASON_SIZES.items()
        }
        raw = _raw_numeric(frame, season_maps)
        scale = raw.std(axis=0)
        return cls(
            n_codes=int(np.nanmax(frame["counter_code"].to_numpy(), initial=-1)) + 2,
            season_maps=season_maps,
            numeric_mean=raw.mean(axis=0),
            # A constant column (e.g. no holiday in the data) is centred and left at zero.
            numeric_scale=np.where(scale > 1e-12, scale, 1.0),
            target_mean=float(target.mean()),
            target_scale=float(target.std()) or 1.0,
            target_range=(float(target.min()), float(target.max())),
        )

    def inputs(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding codes (unknown counters take the spare code) and standardised numbers."""
        counter = frame["counter_code"].to_numpy(dtype=np.float64)
        spare = self.n_codes - 1
        counter = np.where((counter >= 0) & (counter < spare), counter, spare)
        hour = np.clip(frame["hour"].to_numpy(dtype=np.float64), 0, 23)
        weekday = np.clip(frame["weekday"].to_numpy(dtype=np.float64), 0, 6)
        codes = np.column_stack([counter, hour, weekday]).astype(np.int64)
        numeric = (_raw_numeric(frame, self.season_maps) - self.numeric_mean) / self.numeric_scale
        return torch.from_numpy(codes), torch.from_numpy(numeric.astype(np.float32))

    def target(self, target: np.ndarray) -> torch.Tensor:
        scaled = (target - self.target_mean) / self.target_scale
        return torch.from_numpy(scaled.astype(np.float32))


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class _Run:
    """One training run: (train, validation) loss per epoch, and the best epoch if validated."""

    losses: list[tuple[float, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.nan
    best_state: dict = field(default_factory=dict)


def _train(
    n_codes: int, params: NNParams, seed: int, train: Batch, valid: Batch | None, n_epochs: int
) -> tuple[_Network, _Run]:
    """Train a fresh seeded network for up to ``n_epochs`` epochs.

    The step size follows a cosine decay to zero over the ``n_epochs`` epochs' batches, so a
    refit for the epoch count that early stopping chose ends on settled weights. With ``valid``,
    training stops once ``patience`` epochs pass without a better validation loss, and the best
    epoch's weights are kept; without, the last ones.
    """
    torch.manual_seed(seed)
    module = _Network(n_codes, params)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    n_batches = math.ceil(len(train[2]) / params.batch_size)
    steps = np.arange(n_epochs * n_batches) / (n_epochs * n_batches)
    rates = params.learning_rate * 0.5 * (1.0 + np.cos(np.pi * steps))
    run, started = _Run(), time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        epoch_rates = rates[(epoch - 1) * n_batches : epoch * n_batches]
        train_loss = _run_epoch(module, optimizer, train, params.batch_size, generator, epoch_rates)
        valid_loss = math.nan if valid is None else _mean_squared_error(module, valid)
        run.losses.append((train_loss, valid_loss))
        logger.debug(
            "epoch %d: train loss %.4f, validation loss %.4f (scaled MSE, %.1f s)",
            *(epoch, train_loss, valid_loss, time.perf_counter() - started),
        )
        if valid is None:
            continue
        if epoch == 1 or valid_loss < run.best_loss:
            run.best_epoch, run.best_loss = epoch, valid_loss
            run.best_state = copy.deepcopy(module.state_dict())
        elif epoch - run.best_epoch >= params.patience:
            break
    if valid is not None:
        module.load_state_dict(run.best_state)
    return module, run


def _run_epoch(
    module: _Network,
    optimizer: torch.optim.Optimizer,
    data: Batch,
    batch_size: int,
    generator: torch.Generator,
    rates: np.ndarray,
) -> float:
    """One pass over shuffled rows, one step size per batch; returns the mean loss (scaled)."""
    codes, numeric, target = data
    module.train()
    order = torch.randperm(len(target), generator=generator)
    total = 0.0
    for step, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start : start + batch_size]
        optimizer.param_groups[0]["lr"] = float(rates[step])
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(module(codes[batch], numeric[batch]), target[batch])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)


def _mean_squared_error(module: _Network, data: Batch) -> float:
    return float(np.mean((_predict_scaled(module, data[0], data[1]) - data[2].numpy()) ** 2))


def _predict_scaled(module: _Network, codes: torch.Tensor, numeric: torch.Tensor) -> np.ndarray:
    """Network outputs in eval mode, in batches so that memory stays flat."""
    module.eval()
    outputs = [np.empty(0, dtype=np.float32)]
    with torch.inference_mode():
        for start in range(0, len(codes), PREDICT_BATCH_ROWS):
            stop = start + PREDICT_BATCH_ROWS
            outputs.append(module(codes[start:stop], numeric[start:stop]).numpy())
    return np.concatenate(outputs).astype(np.float64)


class TorchRegressor(RegressorMixin, BaseEstimator):
    """A PyTorch regressor on the bikecount feature frame, with temporal early stopping.

    Parameters mirror :class:`NNParams`, plus ``random_state`` (seeds weights, dropout and the
    shuffling; the global torch random state is left as it was). Rows must come oldest first: the
    last ``validation_fraction`` of them is held out to choose the number of epochs.

    Fitted attributes: ``module_`` (the network), ``scaling_`` (input and target encoding),
    ``n_epochs_`` (epochs run before stopping), ``best_epoch_`` (the epoch kept, and the epoch
    count of the refit), ``best_validation_loss_`` (its MSE on the held-out rows, in target units)
    and ``history_`` ((train, validation) MSE per epoch, in target units).
    """

    def __init__(
        self,
        embedding_dim: int = 16,
        hidden_sizes: tuple[int, ...] = (128, 64),
        season_hidden_sizes: tuple[int, ...] = (32, 16),
        dropout: float = 0.1,
        learning_rate: float = 5e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 512,
        max_epochs: int = 40,
        patience: int = 5,
        validation_fraction: float = 0.1,
        refit: bool = True,
        epochs: int | None = None,
        random_state: int = 42,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden_sizes = hidden_sizes
        self.season_hidden_sizes = season_hidden_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.epochs = epochs
        self.random_state = random_state

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray | pd.Series) -> TorchRegressor:
        """Train on time-ordered rows: early-stop on the most recent ones, then refit on all.

        Args:
            X: the feature frame (``FEATURE_COLUMNS``), oldest rows first.
            y: the target, one value per row (log1p of the count in the full model).

        Returns:
            self, fitted.

        Raises:
            pydantic.ValidationError: a hyperparameter is out of range.
            ValueError: X lacks a feature column, or there are too few rows to hold some out.
        """
        params = NNParams(**{name: getattr(self, name) for name in NNParams.model_fields})
        frame = _feature_frame(X)
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        # A fixed epoch count needs no rows to stop on: every row is trained on.
        held = 0 if params.epochs else int(round(len(frame) * params.validation_fraction))
        n_train = len(frame) - held
        if len(target) != len(frame) or n_train <= 0 or (not params.epochs and held == 0):
            raise ValueError(
                f"cannot hold out a validation_fraction of {params.validation_fraction} from "
                f"{len(frame)} rows of X and {len(target)} of y"
            )
        self.n_features_in_ = frame.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        started = time.perf_counter()
        with _torch_threads(N_THREADS), torch.random.fork_rng(devices=[]):
            self.module_ = self._fit_network(params, frame, target, n_train)
        self.module_.eval()
        logger.info(
            "nn stopped after %d epoch(s), best epoch %d (validation MSE %.4f), %.1f s in all",
            *(self.n_epochs_, self.best_epoch_, self.best_validation_loss_),
            time.perf_counter() - started,
        )
        return self

    def _fit_network(
        self, params: NNParams, frame: pd.DataFrame, target: np.ndarray, n_train: int
    ) -> _Network:
        if params.epochs is not None:
            return self._fit_fixed_epochs(params, frame, target)
        # Encoding learned on the training rows only: the held-out rows stand for the future.
        self.scaling_ = _Scaling.learn(frame.iloc[:n_train], target[:n_train])
        codes, numeric = self.scaling_.inputs(frame)
        scaled = self.scaling_.target(target)
        train = (codes[:n_train], numeric[:n_train], scaled[:n_train])
        valid = (codes[n_train:], numeric[n_train:], scaled[n_train:])
        n_codes, seed = self.scaling_.n_codes, self.random_state
        module, run = _train(n_codes, params, seed, train, valid, params.max_epochs)
        to_target_units = self.scaling_.target_scale**2
        self.n_epochs_, self.best_epoch_ = len(run.losses), run.best_epoch
        self.best_validation_loss_ = run.best_loss * to_target_units
        self.history_ = [(a * to_target_units, b * to_target_units) for a, b in run.losses]
        if params.refit:
            self.scaling_ = _Scaling.learn(frame, target)
            codes, numeric = self.scaling_.inputs(frame)
            everything = (codes, numeric, self.scaling_.target(target))
            n_codes = self.scaling_.n_codes
            module, _ = _train(n_codes, params, seed, everything, None, run.best_epoch)
        return module

    def _fit_fixed_epochs(
        self, params: NNParams, frame: pd.DataFrame, target: np.ndarray
    ) -> _Network:
        """Every row, exactly ``params.epochs`` epochs: the refit of a registered model."""
        assert params.epochs is not None
        self.scaling_ = _Scaling.learn(frame, target)
        codes, numeric = self.scaling_.inputs(frame)
        everything = (codes, numeric, self.scaling_.target(target))
        module, run = _train(
            self.scaling_.n_codes, params, self.random_state, everything, None, params.epochs
        )
        to_target_units = self.scaling_.target_scale**2
        self.n_epochs_ = self.best_epoch_ = params.epochs
        self.best_validation_loss_ = math.nan
        self.history_ = [(a * to_target_units, b) for a, b in run.losses]
        return module

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predictions in target units, one per row, as a 1-D float array."""
        check_is_fitted(self, "module_")
        codes, numeric = self.scaling_.inputs(_feature_frame(X))
        with _torch_threads(N_THREADS):
            scaled = _predict_scaled(self.module_, codes, numeric)
        predictions = scaled * self.scaling_.target_scale + self.scaling_.target_mean
        # Never outside what training saw: no negative count, no runaway extrapolation.
        return np.clip(predictions, *self.scaling_.target_range)


def build_nn(params: NNParams, seed: int) -> TorchRegressor:
    """A :class:`TorchRegressor` with these hyperparameters and seed (not yet fitted)."""
    return TorchRegressor(**params.model_dump(), random_state=seed)


def build_nn_model(params: NNParams, seed: int) -> TransformedTargetRegressor:
    """The full ``nn`` model on raw records: features, then the network, on log1p(count).

    Predictions are counts, never negative (the inverse of log1p is clipped at zero).
    """
    pipeline = Pipeline([*build_feature_pipeline().steps, ("model", build_nn(params, seed))])
    return log_count_regressor(pipeline)
