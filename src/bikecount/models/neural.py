"""The ``nn`` model: a small PyTorch network behind scikit-learn's estimator contract.

:class:`TorchRegressor` takes the feature frame of :mod:`bikecount.features` (columns
``FEATURE_COLUMNS``, rows oldest first) and a target (log1p of the count in the full model). It
learns embeddings for the counter, the hour and the weekday, joins them with standardised numeric
inputs (cyclic calendar terms, counter level, place, weekend and holiday flags) and feeds a few
dense layers. Training stops early on the most recent rows, as a forecast would be judged.

The estimator does not run scikit-learn's generic ``parametrize_with_checks``: it needs the named
feature columns with their meaning (an hour in 0..23, a counter code), not arbitrary numbers.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from bikecount.features import FEATURE_COLUMNS

logger = logging.getLogger(__name__)

# Numeric inputs taken as they are (then standardised); the cyclic terms are added to them.
PLAIN_NUMERIC = ("counter_level", "lat", "lon", "is_weekend", "is_holiday")
# Cyclic calendar columns and their period: sin/cos make December sit next to January.
CYCLIC_PERIODS = {"hour": 24.0, "day_of_year": 365.25, "month": 12.0}
# Seasonal columns (and their table sizes): a day or month never seen in training takes the last
# one seen before it, so a forecast past the training period keeps the latest season rather than
# extrapolating the network along the cycle (one year of data cannot tell season from trend).
SEASON_SIZES = {"day_of_year": 367, "month": 13}
PREDICT_BATCH_ROWS = 65_536
# The machines we train on have two cores shared with other work: never take more.
MAX_THREADS = 1
ADDITIVE = True


class NNParams(BaseModel):
    """Hyperparameters of the ``nn`` model; the defaults fit the Paris data in about a minute."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(default=16, ge=1, le=256)
    hidden_sizes: tuple[Annotated[int, Field(ge=1, le=4096)], ...] = Field(
        default=(128, 64), min_length=1, max_length=6
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=2e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=1e-5, ge=0.0, le=1.0)
    batch_size: int = Field(default=1024, ge=8, le=262_144)
    max_epochs: int = Field(default=40, ge=1, le=1000)
    patience: int = Field(default=5, ge=1, le=100)
    validation_fraction: float = Field(default=0.1, gt=0.0, le=0.5)


def _mlp(width: int, hidden_sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Dense ReLU layers with dropout, then one linear output."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class _Network(nn.Module):
    """Embeddings (counter, hour, weekday) joined with numeric inputs, then ReLU MLPs.

    With ``season_columns``, two MLPs add up: one sees the counter and the time of day/week but
    not the season, the other the season and the time of day/week but not the counter.
    """

    def __init__(
        self,
        n_codes: int,
        n_numeric: int,
        embedding_dim: int,
        hidden_sizes: tuple[int, ...],
        dropout: float,
        season_columns: list[int] | None = None,
        shared_columns: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.counter_embedding = nn.Embedding(n_codes, embedding_dim)
        self.hour_embedding = nn.Embedding(24, embedding_dim)
        self.weekday_embedding = nn.Embedding(7, embedding_dim)
        self.season_columns = season_columns
        self.shared_columns = shared_columns
        if season_columns:
            self.counter_columns = [i for i in range(n_numeric) if i not in season_columns]
            self.mlp = _mlp(3 * embedding_dim + len(self.counter_columns), hidden_sizes, dropout)
            width = 2 * embedding_dim + len(season_columns) + len(shared_columns)
            self.season_mlp = _mlp(width, hidden_sizes, dropout)
        else:
            self.mlp = _mlp(3 * embedding_dim + n_numeric, hidden_sizes, dropout)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        hour = self.hour_embedding(codes[:, 1])
        weekday = self.weekday_embedding(codes[:, 2])
        counter = self.counter_embedding(codes[:, 0])
        if not self.season_columns:
            return self.mlp(torch.cat([counter, hour, weekday, numeric], dim=1)).squeeze(1)
        place = torch.cat([counter, hour, weekday, numeric[:, self.counter_columns]], dim=1)
        season = torch.cat(
            [hour, weekday, numeric[:, self.shared_columns], numeric[:, self.season_columns]], dim=1
        )
        return (self.mlp(place) + self.season_mlp(season)).squeeze(1)


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
    if isinstance(X, pd.DataFrame):
        missing = [col for col in FEATURE_COLUMNS if col not in X.columns]
        if missing:
            raise ValueError(f"TorchRegressor needs the feature columns {missing}")
        return X
    array = np.asarray(X)
    if array.ndim != 2 or array.shape[1] != len(FEATURE_COLUMNS):
        raise ValueError(
            f"TorchRegressor needs {len(FEATURE_COLUMNS)} feature columns "
            f"{FEATURE_COLUMNS}, got an array of shape {array.shape}"
        )
    return pd.DataFrame(array, columns=list(FEATURE_COLUMNS))


def _numeric_names() -> list[str]:
    names = list(PLAIN_NUMERIC)
    for col in CYCLIC_PERIODS:
        names += [f"{col}_sin", f"{col}_cos"]
    return names


def _raw_numeric(frame: pd.DataFrame, season_maps: dict[str, np.ndarray]) -> np.ndarray:
    """Numeric inputs before standardisation: plain columns, then sin/cos of cyclic ones.

    ``season_maps`` sends each value of a seasonal column to the latest value seen in training.
    """
    columns = [frame[col].to_numpy(dtype=np.float64) for col in PLAIN_NUMERIC]
    for col, period in CYCLIC_PERIODS.items():
        values = frame[col].to_numpy(dtype=np.float64)
        if col in season_maps:
            table = season_maps[col]
            values = table[np.clip(values, 0, len(table) - 1).astype(np.int64)]
        angle = 2.0 * np.pi * values / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.column_stack(columns)


def carry_forward_table(seen: np.ndarray, size: int) -> np.ndarray:
    """A lookup table over 0..size-1: seen values map to themselves, others to the last seen
    value before them (going round the cycle), as a forecast keeps the latest season it knows.
    """
    seen_values = np.unique(seen.astype(np.int64))
    table = np.arange(size, dtype=np.float64)
    if seen_values.size == 0:
        return table
    is_seen = np.zeros(size, dtype=bool)
    is_seen[np.clip(seen_values, 0, size - 1)] = True
    last = float(seen_values[-1])  # before the first seen value, the cycle's last one counts
    for value in range(size):
        if is_seen[value]:
            last = float(value)
        else:
            table[value] = last
    return table


class TorchRegressor(RegressorMixin, BaseEstimator):
    """A PyTorch MLP regressor on the bikecount feature frame, with temporal early stopping.

    Parameters mirror :class:`NNParams`, plus ``random_state`` (seeds weights, dropout and the
    shuffling; the global torch random state is left as it was). Rows must come oldest first: the
    last ``validation_fraction`` of them is held out to choose the epoch whose weights are kept.

    Fitted attributes: ``module_`` (the network, eval mode), ``n_codes_`` (known counters plus one
    spare code for any unknown one), ``numeric_mean_``/``numeric_scale_``, ``target_mean_``/
    ``target_scale_``, ``target_range_`` (predictions are clipped to it), ``n_epochs_``,
    ``best_epoch_``, ``best_validation_loss_`` (MSE in target units), ``history_``.
    """

    def __init__(
        self,
        embedding_dim: int = 16,
        hidden_sizes: tuple[int, ...] = (128, 64),
        dropout: float = 0.1,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 1024,
        max_epochs: int = 40,
        patience: int = 5,
        validation_fraction: float = 0.1,
        random_state: int = 42,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _params(self) -> NNParams:
        """The hyperparameters, validated (``set_params`` may have put in anything)."""
        return NNParams(**{name: getattr(self, name) for name in NNParams.model_fields})

    def _codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Integer inputs for the embeddings; unknown or invalid counters take the spare code."""
        counter = frame["counter_code"].to_numpy(dtype=np.float64)
        spare = self.n_codes_ - 1
        counter = np.where((counter >= 0) & (counter < spare), counter, spare)
        hour = np.clip(frame["hour"].to_numpy(dtype=np.float64), 0, 23)
        weekday = np.clip(frame["weekday"].to_numpy(dtype=np.float64), 0, 6)
        return np.column_stack([counter, hour, weekday]).astype(np.int64)

    def _tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        numeric = (
            _raw_numeric(frame, self.season_maps_) - self.numeric_mean_
        ) / self.numeric_scale_
        return (
            torch.from_numpy(self._codes(frame)),
            torch.from_numpy(numeric.astype(np.float32)),
        )

    def _learn_scaling(self, frame: pd.DataFrame, target: np.ndarray) -> None:
        """Standardisation statistics of the inputs and the target, and the code count."""
        codes = frame["counter_code"].to_numpy(dtype=np.float64)
        self.n_codes_ = int(np.nanmax(codes, initial=-1)) + 2  # known codes 0..K-1, spare K
        self.season_maps_ = {
            col: carry_forward_table(frame[col].to_numpy(), size)
            for col, size in SEASON_SIZES.items()
        }
        raw = _raw_numeric(frame, self.season_maps_)
        self.numeric_mean_ = raw.mean(axis=0)
        # A constant column (e.g. no holiday in the data) is centred and left at zero.
        scale = raw.std(axis=0)
        self.numeric_scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.target_mean_ = float(target.mean())
        self.target_scale_ = float(target.std()) or 1.0
        self.target_range_ = (float(target.min()), float(target.max()))

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray | pd.Series) -> TorchRegressor:
        """Train on time-ordered rows, early-stopping on the most recent ones.

        Args:
            X: the feature frame (``FEATURE_COLUMNS``), oldest rows first.
            y: the target, one value per row (log1p of the count in the full model).

        Returns:
            self, fitted.
        """
        params = self._params()
        frame = _feature_frame(X)
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(target) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(target)}")
        n_valid = int(round(len(frame) * params.validation_fraction))
        if len(frame) - n_valid < 1 or n_valid < 1:
            raise ValueError(
                f"{len(frame)} rows are too few to hold out a validation_fraction of "
                f"{params.validation_fraction}"
            )
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        n_train = len(frame) - n_valid
        # Scaling comes from the training rows only, as the held-out month would not be known.
        self._learn_scaling(frame.iloc[:n_train], target[:n_train])
        codes, numeric = self._tensors(frame)
        scaled = torch.from_numpy(
            ((target - self.target_mean_) / self.target_scale_).astype(np.float32)
        )
        train = (codes[:n_train], numeric[:n_train], scaled[:n_train])
        valid = (codes[n_train:], numeric[n_train:], scaled[n_train:])
        with _torch_threads(MAX_THREADS), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.module_ = self._train(params, train, valid)
        return self

    def _train(
        self,
        params: NNParams,
        train: tuple[torch.Tensor, ...],
        valid: tuple[torch.Tensor, ...],
    ) -> _Network:
        """The epoch loop: shuffle, step, validate, keep the best weights, stop on patience."""
        names = _numeric_names()
        season = [names.index(n) for n in names if n.split("_")[0] in ("day", "month")]
        shared = [names.index(n) for n in ("is_weekend", "is_holiday", "hour_sin", "hour_cos")]
        module = _Network(
            self.n_codes_,
            train[1].shape[1],
            params.embedding_dim,
            params.hidden_sizes,
            params.dropout,
            season if ADDITIVE else None,
            shared if ADDITIVE else None,
        )
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
        )
        # Halving the step when validation stalls settles the weights before patience runs out.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
        generator = torch.Generator().manual_seed(self.random_state)
        best_loss, best_state, best_epoch = float("inf"), copy.deepcopy(module.state_dict()), 0
        self.history_: list[tuple[float, float]] = []
        started = time.perf_counter()
        for epoch in range(1, params.max_epochs + 1):
            train_loss = _run_epoch(module, optimizer, train, params.batch_size, generator)
            valid_loss = _evaluate(module, valid) * self.target_scale_**2
            scheduler.step(valid_loss)
            self.history_.append((train_loss * self.target_scale_**2, valid_loss))
            logger.debug(
                "epoch %d: train loss %.5f, validation loss %.5f (%.1f s)",
                epoch,
                self.history_[-1][0],
                valid_loss,
                time.perf_counter() - started,
            )
            if valid_loss < best_loss:
                best_loss, best_epoch = valid_loss, epoch
                best_state = copy.deepcopy(module.state_dict())
            elif epoch - best_epoch >= params.patience:
                break
        module.load_state_dict(best_state)
        module.eval()
        self.n_epochs_, self.best_epoch_, self.best_validation_loss_ = epoch, best_epoch, best_loss
        logger.info(
            "nn trained %d epoch(s) in %.1f s; best epoch %d, validation MSE %.5f",
            epoch,
            time.perf_counter() - started,
            best_epoch,
            best_loss,
        )
        return module

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predictions in target units, one per row, as a 1-D float array."""
        check_is_fitted(self, "module_")
        codes, numeric = self._tensors(_feature_frame(X))
        self.module_.eval()
        outputs = []
        with _torch_threads(MAX_THREADS), torch.inference_mode():
            for start in range(0, len(codes), PREDICT_BATCH_ROWS):
                stop = start + PREDICT_BATCH_ROWS
                outputs.append(self.module_(codes[start:stop], numeric[start:stop]).numpy())
        scaled = np.concatenate(outputs) if outputs else np.empty(0, dtype=np.float32)
        predictions = scaled.astype(np.float64) * self.target_scale_ + self.target_mean_
        # Never outside what training saw: no negative count, no runaway extrapolation.
        return np.clip(predictions, *self.target_range_)


def _run_epoch(
    module: _Network,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, ...],
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over shuffled training rows; returns the mean training loss (scaled units)."""
    codes, numeric, target = data
    module.train()
    order = torch.randperm(len(target), generator=generator)
    total = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(module(codes[batch], numeric[batch]), target[batch])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)


def _evaluate(module: _Network, data: tuple[torch.Tensor, ...]) -> float:
    """Mean squared error on held-out rows (scaled units), in eval mode."""
    codes, numeric, target = data
    module.eval()
    squared = 0.0
    with torch.inference_mode():
        for start in range(0, len(target), PREDICT_BATCH_ROWS):
            stop = start + PREDICT_BATCH_ROWS
            error = module(codes[start:stop], numeric[start:stop]) - target[start:stop]
            squared += float((error**2).sum())
    return squared / len(target)


def build_nn(params: NNParams, seed: int) -> TorchRegressor:
    """A :class:`TorchRegressor` with these hyperparameters and seed (not yet fitted)."""
    return TorchRegressor(**params.model_dump(), random_state=seed)
