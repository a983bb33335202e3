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

The network, its hyperparameters and its training loop are in :mod:`bikecount.models.nn_network`;
how the feature frame becomes the network's inputs, in :mod:`bikecount.models.nn_inputs`.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from bikecount.features import build_feature_pipeline
from bikecount.models.nn_inputs import Scaling, feature_frame
from bikecount.models.nn_network import (
    N_THREADS,
    Network,
    NNParams,
    Run,
    predict_scaled,
    torch_threads,
    train_network,
)
from bikecount.models.targets import log_count_regressor

logger = logging.getLogger(__name__)

# The hyperparameters' defaults, stated once in NNParams.
_DEFAULTS = NNParams()


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
        embedding_dim: int = _DEFAULTS.embedding_dim,
        hidden_sizes: tuple[int, ...] = _DEFAULTS.hidden_sizes,
        season_hidden_sizes: tuple[int, ...] = _DEFAULTS.season_hidden_sizes,
        dropout: float = _DEFAULTS.dropout,
        learning_rate: float = _DEFAULTS.learning_rate,
        weight_decay: float = _DEFAULTS.weight_decay,
        batch_size: int = _DEFAULTS.batch_size,
        max_epochs: int = _DEFAULTS.max_epochs,
        patience: int = _DEFAULTS.patience,
        validation_fraction: float = _DEFAULTS.validation_fraction,
        refit: bool = _DEFAULTS.refit,
        epochs: int | None = _DEFAULTS.epochs,
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
        frame = feature_frame(X)
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
        with torch_threads(N_THREADS), torch.random.fork_rng(devices=[]):
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
    ) -> Network:
        if params.epochs is not None:
            return self._fit_fixed_epochs(params, frame, target)
        # Encoding learned on the training rows only: the held-out rows stand for the future.
        self.scaling_ = Scaling.learn(frame.iloc[:n_train], target[:n_train])
        codes, numeric = self.scaling_.inputs(frame)
        scaled = self.scaling_.target(target)
        train = (codes[:n_train], numeric[:n_train], scaled[:n_train])
        valid = (codes[n_train:], numeric[n_train:], scaled[n_train:])
        n_codes, seed = self.scaling_.n_codes, self.random_state
        module, run = train_network(n_codes, params, seed, train, valid, params.max_epochs)
        to_target_units = self.scaling_.target_scale**2
        self.n_epochs_, self.best_epoch_ = len(run.losses), run.best_epoch
        self.best_validation_loss_ = run.best_loss * to_target_units
        self.history_ = [(a * to_target_units, b * to_target_units) for a, b in run.losses]
        if params.refit:
            module, _ = self._train_on_every_row(params, frame, target, run.best_epoch)
        return module

    def _fit_fixed_epochs(
        self, params: NNParams, frame: pd.DataFrame, target: np.ndarray
    ) -> Network:
        """Every row, exactly ``params.epochs`` epochs: the refit of a registered model."""
        assert params.epochs is not None
        module, run = self._train_on_every_row(params, frame, target, params.epochs)
        to_target_units = self.scaling_.target_scale**2
        self.n_epochs_ = self.best_epoch_ = params.epochs
        self.best_validation_loss_ = math.nan
        self.history_ = [(a * to_target_units, b) for a, b in run.losses]
        return module

    def _train_on_every_row(
        self, params: NNParams, frame: pd.DataFrame, target: np.ndarray, n_epochs: int
    ) -> tuple[Network, Run]:
        """Encoding learned on every row, then ``n_epochs`` epochs on them, no early stopping."""
        self.scaling_ = Scaling.learn(frame, target)
        codes, numeric = self.scaling_.inputs(frame)
        everything = (codes, numeric, self.scaling_.target(target))
        n_codes, seed = self.scaling_.n_codes, self.random_state
        return train_network(n_codes, params, seed, everything, None, n_epochs)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predictions in target units, one per row, as a 1-D float array."""
        check_is_fitted(self, "module_")
        codes, numeric = self.scaling_.inputs(feature_frame(X))
        with torch_threads(N_THREADS):
            scaled = predict_scaled(self.module_, codes, numeric)
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
