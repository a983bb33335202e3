"""Honest scores: a temporal holdout, and the metrics that select models."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from bikecount.models.protocol import RecordModel, as_classifier
from bikecount.records import COUNT_COLUMN, COUNTER_COLUMN, TIMESTAMP_COLUMN

logger = logging.getLogger(__name__)

# The metric that decides champion/challenger, and whether higher is better.
SELECTION_METRIC = {"regression": ("rmse", False), "classification": ("f1_score", True)}
HIGHER_IS_BETTER = {
    "r2": True, "rmse": False, "mae": False, "rmse_log1p": False,
    "accuracy": True, "precision": True, "recall": True, "f1_score": True, "roc_auc": True,
}  # fmt: skip
REGRESSION_METRICS = ("rmse", "mae", "r2", "rmse_log1p")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1_score", "roc_auc")


@dataclass
class HoldoutSplit:
    train: pd.DataFrame
    holdout: pd.DataFrame
    cutoff: pd.Timestamp
    rule: str


# The last ``days`` days are the holdout when the data before them spans at least this many
# times as long (so most of the data is fitted on) and they hold at least ``MIN_HOLDOUT_ROWS``.
MIN_TRAIN_SPANS = 3
MIN_HOLDOUT_ROWS = 100
# Otherwise (short or sparse data) the holdout is this share of the period, at its end.
SHORT_DATA_HOLDOUT_SHARE = 0.2


def split_holdout(frame: pd.DataFrame, days: int, *, start: date | None = None) -> HoldoutSplit:
    """Keep the last ``days`` days of canonical records out of fitting, or those from ``start``.

    The rule: the last ``days`` days are the holdout whenever the data spans at least
    ``MIN_TRAIN_SPANS + 1`` times ``days`` and those days hold at least ``MIN_HOLDOUT_ROWS``
    records. Short or sparse data (such as the 1,000-row test sample) holds out the last
    ``SHORT_DATA_HOLDOUT_SHARE`` of its time span instead. With ``start`` (a local day), the
    holdout is exactly the records from that day on: the retraining pipeline compares the models
    on the recent days.

    Raises:
        ValueError: fewer than two distinct timestamps, so no temporal holdout is possible; or
            no record on one side of ``start``.
    """
    frame = frame.sort_values(TIMESTAMP_COLUMN, kind="stable")
    times = frame[TIMESTAMP_COLUMN]
    if start is not None:
        cutoff = pd.Timestamp(start).tz_localize(times.dt.tz)
        later = times >= cutoff
        if later.all() or not later.any():
            side = "before" if later.all() else "from"
            raise ValueError(f"holdout from {start}: the data has no record {side} that day")
        return HoldoutSplit(frame[~later], frame[later], cutoff, f"from {start}")
    start_time, end = times.min(), times.max()
    if start_time == end:
        raise ValueError("the data covers a single hour: a temporal holdout needs more")
    cutoff, rule = end - pd.Timedelta(days=days), f"last {days} days"
    long_enough = end - start_time >= pd.Timedelta(days=days * (MIN_TRAIN_SPANS + 1))
    held = int((times > cutoff).sum())
    if not long_enough or held < MIN_HOLDOUT_ROWS:
        cutoff = start_time + (end - start_time) * (1 - SHORT_DATA_HOLDOUT_SHARE)
        rule = f"last {SHORT_DATA_HOLDOUT_SHARE:.0%} of the period"
        logger.info("%d days cannot be held out (%d rows); using %s", days, held, rule)
    later = times > cutoff
    return HoldoutSplit(frame[~later], frame[later], cutoff, rule)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² on counts and RMSE on log1p(count)."""
    y_true, y_pred = np.asarray(y_true, float), np.clip(np.asarray(y_pred, float), 0, None)
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        "rmse_log1p": float(np.sqrt(mean_squared_error(np.log1p(y_true), np.log1p(y_pred)))),
    }


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba_forte: np.ndarray
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of ``forte`` and ROC AUC (NaN when one class only)."""
    both_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1_score": float(f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, proba_forte)) if both_classes else float("nan"),
    }


def score_model(model: RecordModel, task: str, records: pd.DataFrame) -> dict[str, float]:
    """Score a fitted model on canonical records that carry their counts."""
    counts = records[COUNT_COLUMN].to_numpy(dtype=float)
    if task == "classification":
        classifier = as_classifier(model)
        truth = classifier.labels_for(records, counts)
        return classification_metrics(
            truth, classifier.predict(records), classifier.predict_proba(records)[:, 1]
        )
    return regression_metrics(counts, model.predict(records))


def per_counter_rmse(records: pd.DataFrame, predictions: np.ndarray) -> dict[str, float]:
    """RMSE of each counter's predictions, worst first."""
    errors = (records[COUNT_COLUMN].to_numpy(dtype=float) - np.asarray(predictions, float)) ** 2
    rmse = pd.Series(errors).groupby(records[COUNTER_COLUMN].to_numpy()).mean() ** 0.5
    return {str(k): round(float(v), 3) for k, v in rmse.sort_values(ascending=False).items()}


def is_better(metric: str, candidate: float, incumbent: float, tolerance: float = 1e-9) -> bool:
    """Whether ``candidate`` beats ``incumbent`` on ``metric``: a tie or NaN never wins."""
    if np.isnan(candidate):
        return False
    if np.isnan(incumbent):
        return True
    margin = tolerance * max(abs(incumbent), 1.0)
    if HIGHER_IS_BETTER[metric]:
        return candidate > incumbent + margin
    return candidate < incumbent - margin


def finite_metrics(
    metrics: Mapping[str, float], digits: int | None = None
) -> dict[str, float | None]:
    """Metrics for JSON, which has no NaN: an undefined one (R² on one row, AUC on one class)
    becomes None; the others are rounded to ``digits`` when given."""
    return {
        name: None
        if not math.isfinite(value)
        else (float(value) if digits is None else round(float(value), digits))
        for name, value in metrics.items()
    }
