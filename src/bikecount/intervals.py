"""Prediction intervals: how far counts fall from forecasts, learned where the model never looked.

A calibration is split-conformal: the residuals ``log1p(count) - log1p(prediction)`` of forecasts
made on counts the model was not fitted on (the training holdout, or the backtest's own past
days), grouped by the forecast's level (quiet hours scatter more in log1p units than busy ones).
The interval of a new forecast at level L is the forecast moved, in log1p space, by the
``(1 - L) / 2`` and ``(1 + L) / 2`` quantiles of its group's residuals, clipped at zero counts.
Nothing here depends on the model type: any forecast with a calibration gets an interval.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# The level asked for when none is given: four forecasts in five hold the count.
DEFAULT_LEVEL = 0.8
# Groups by forecast level, of equal numbers of residuals...
LEVEL_GROUPS = 8
# ...with at least this many residuals each (fewer groups when the residuals are few).
MIN_GROUP_RESIDUALS = 50
# Quantiles kept per group: the calibration's size does not grow with the holdout's.
QUANTILE_POINTS = 1001
# The attribute a fitted model carries its calibration in (pickled with it).
CALIBRATION_ATTRIBUTE = "interval_calibration_"


class IntervalLevelError(ValueError):
    """A level that is not a number strictly between 0 and 1."""


class NoCalibrationError(LookupError):
    """A model that carries no interval calibration (registered before intervals existed)."""


def check_level(level: object) -> float:
    """``level`` as a float strictly between 0 and 1.

    Raises:
        IntervalLevelError: not a number (booleans and text included), NaN, or not in (0, 1).
    """
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise IntervalLevelError(f"the interval level must be a number, got {level!r}")
    if not math.isfinite(level) or not 0 < level < 1:
        raise IntervalLevelError(
            f"the interval level must be strictly between 0 and 1 (e.g. 0.8), got {level}"
        )
    return float(level)


@dataclass(frozen=True, eq=False)
class IntervalCalibration:
    """Quantiles of log1p residuals, per group of forecast level.

    Attributes:
        edges: the inner edges of the groups, in log1p(prediction) (one fewer than groups).
        quantiles: per group, the residuals' quantiles at ``QUANTILE_POINTS`` even steps from
            0 to 1.
        sizes: the residuals each group was learned from.
        source: where the residuals come from (e.g. ``holdout``), for people reading it.
    """

    edges: np.ndarray
    quantiles: np.ndarray
    sizes: np.ndarray
    source: str

    @property
    def residuals(self) -> int:
        return int(self.sizes.sum())

    def offsets(self, predictions: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The log1p offsets (lower, upper) of the interval of each prediction at ``level``."""
        level = check_level(level)
        groups = np.searchsorted(self.edges, np.log1p(np.clip(predictions, 0, None)))
        grid = np.linspace(0.0, 1.0, self.quantiles.shape[1])
        low_p, high_p = _conformal_probabilities(self.sizes, level)
        low = np.array([np.interp(p, grid, q) for p, q in zip(low_p, self.quantiles, strict=True)])
        high = np.array(
            [np.interp(p, grid, q) for p, q in zip(high_p, self.quantiles, strict=True)]
        )
        return low[groups], high[groups]

    def bounds(self, predictions: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The (lower, upper) counts of each prediction's interval at ``level``, never negative.

        Raises:
            IntervalLevelError: a level outside (0, 1).
        """
        predicted = np.clip(np.asarray(predictions, float), 0, None)
        low, high = self.offsets(predicted, level)
        return shifted(predicted, low), shifted(predicted, high)


def shifted(predictions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Counts moved by ``offsets`` in log1p space, clipped at zero."""
    return np.clip(np.expm1(np.log1p(np.clip(predictions, 0, None)) + offsets), 0, None)


def _conformal_probabilities(sizes: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The residual quantiles of a split-conformal interval of each group: the
    ``ceil((n + 1)(1 + level) / 2) / n``-th, and its mirror, so that n residuals cover a new one
    at least ``level`` of the time (capped at the extremes when n is small)."""
    n = np.maximum(sizes.astype(float), 1.0)
    high = np.minimum(np.ceil((n + 1) * (1 + level) / 2) / n, 1.0)
    return 1.0 - high, high


def calibrate(
    counts: np.ndarray,
    predictions: np.ndarray,
    source: str,
    groups: int = LEVEL_GROUPS,
    *,
    centred: bool = False,
) -> IntervalCalibration:
    """Learn a calibration from forecasts of counts the model was not fitted on.

    Args:
        counts: the true counts (NaN rows are left out).
        predictions: the forecasts of those counts, in order.
        source: where they come from, kept with the calibration.
        groups: groups of forecast level, at most (fewer when residuals are few).
        centred: keep only the residuals' spread, each group's median moved to zero: for a
            model refitted on the residuals' own days, which learned their bias away.

    Raises:
        ValueError: no count with a finite forecast.
    """
    counts, predictions = np.asarray(counts, float), np.asarray(predictions, float)
    known = np.isfinite(counts) & np.isfinite(predictions)
    if not known.any():
        raise ValueError("no counted forecast to calibrate intervals on")
    level = np.log1p(np.clip(predictions[known], 0, None))
    residual = np.log1p(np.clip(counts[known], 0, None)) - level
    wanted = max(1, min(groups, len(residual) // MIN_GROUP_RESIDUALS))
    # Edges among the forecasts themselves, below the highest: no group is left empty.
    edges = np.unique(np.quantile(level, np.linspace(0, 1, wanted + 1)[1:-1], method="lower"))
    edges = edges[edges < level.max()]
    group_of = np.searchsorted(edges, level)
    grid = np.linspace(0.0, 1.0, QUANTILE_POINTS)
    members = [residual[group_of == g] for g in range(len(edges) + 1)]
    quantiles = np.vstack([np.quantile(m, grid) for m in members])
    if centred:
        quantiles -= np.median(quantiles, axis=1, keepdims=True)
    sizes = np.array([len(m) for m in members])
    return IntervalCalibration(edges, quantiles, sizes, source)


def interval_metrics(
    counts: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float
) -> dict[str, float]:
    """How intervals did: the share of counts inside them, and their mean width in log1p units.

    Returns:
        ``interval_level``, ``interval_coverage`` and ``interval_width_log1p`` (mean of
        log1p(upper) - log1p(lower)); NaN coverage and width when no row has both.
    """
    counts, lower, upper = (np.asarray(v, float) for v in (counts, lower, upper))
    rows = np.isfinite(counts) & np.isfinite(lower) & np.isfinite(upper)
    if not rows.any():
        nan = float("nan")
        return {"interval_level": level, "interval_coverage": nan, "interval_width_log1p": nan}
    inside = (counts[rows] >= lower[rows]) & (counts[rows] <= upper[rows])
    width = np.log1p(upper[rows]) - np.log1p(lower[rows])
    return {
        "interval_level": level,
        "interval_coverage": float(inside.mean()),
        "interval_width_log1p": float(width.mean()),
    }


def attach_calibration(model: object, calibration: IntervalCalibration) -> None:
    """Store ``calibration`` on a fitted model, so that it is pickled and served with it."""
    setattr(model, CALIBRATION_ATTRIBUTE, calibration)


def calibration_of(model: object) -> IntervalCalibration | None:
    """The calibration a fitted model carries; None for models fitted before intervals."""
    calibration = getattr(model, CALIBRATION_ATTRIBUTE, None)
    return calibration if isinstance(calibration, IntervalCalibration) else None


def model_bounds(
    model: object, predictions: np.ndarray, level: float, name: str = "the model"
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a model's own ``predictions`` at ``level``, from its calibration.

    Raises:
        IntervalLevelError: a level outside (0, 1); NoCalibrationError: the model has none.
    """
    calibration = calibration_of(model)
    if calibration is None:
        raise NoCalibrationError(
            f"{name} carries no interval calibration (it was trained before intervals "
            "existed): train a new version to get intervals"
        )
    return calibration.bounds(predictions, level)
