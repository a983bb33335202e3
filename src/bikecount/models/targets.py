"""Count targets: models learn log1p(count) and give back counts that are never negative."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor


def expm1_clipped(values: np.ndarray) -> np.ndarray:
    """Inverse of log1p, clipped at zero: a count is never negative."""
    return np.clip(np.expm1(values), 0.0, None)


def log_count_regressor(regressor: BaseEstimator) -> TransformedTargetRegressor:
    """Wrap a regressor so it fits log1p(count) and predicts counts >= 0."""
    return TransformedTargetRegressor(
        regressor=regressor, func=np.log1p, inverse_func=expm1_clipped, check_inverse=False
    )
