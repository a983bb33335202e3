"""Use registered models: pick a version, predict on raw records, score on labelled files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bikecount import lean_predict
from bikecount.data.io import read_records, write_records
from bikecount.evaluate import per_counter_rmse, score_model
from bikecount.intervals import DEFAULT_LEVEL, calibration_of, check_level, interval_metrics
from bikecount.models import get_spec
from bikecount.models.affluence import LABELS, Label
from bikecount.models.protocol import RecordModel, as_classifier
from bikecount.records import parse_records, require_valid
from bikecount.registry import Registry

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Predictions in input order; for the classifier also labels and P(forte)."""

    values: np.ndarray
    labels: list[Label] | None = None
    proba_forte: np.ndarray | None = None


def tune_for_serving(model: RecordModel) -> RecordModel:
    """Make a loaded model predict on one thread, and return it.

    An API serves many small requests at once: a forest that builds a thread pool per call
    (``n_jobs=-1``) spends most of a one-record prediction doing so, and requests already run
    in parallel. Walks the fitted estimators (pipelines, target and affluence wrappers, an
    ensemble's members).
    """
    seen: set[int] = set()
    # The estimators inside are scikit-learn's, of any kind: only their attributes are read.
    pending: list[object] = [model]
    while pending:
        estimator = pending.pop()
        if id(estimator) in seen:
            continue
        seen.add(id(estimator))
        if hasattr(estimator, "n_jobs"):
            estimator.n_jobs = 1
        pending += [step for _, step in getattr(estimator, "steps", [])]
        pending += [member for _, member in getattr(estimator, "members_", [])]
        pending += [
            getattr(estimator, name)
            for name in ("regressor_", "classifier_")
            if hasattr(estimator, name)
        ]
    return model


def load_for_serving(registry: Registry, model_type: str, version: int) -> RecordModel:
    """A registered version, tuned for serving (see :func:`tune_for_serving`)."""
    return tune_for_serving(registry.load_version(model_type, version))


def predict_records(model: RecordModel, task: str, records: pd.DataFrame) -> Predictions:
    """Predict canonical or raw records with a fitted model, in input order.

    The model's own answers, through :mod:`bikecount.lean_predict`: its fitted steps called
    without the wrappers' per-call costs, which are most of a small request's time.
    """
    if task == "classification":
        classifier = as_classifier(model)
        # One pass through the pipeline: the labels are the likelier class of the probabilities
        # (as the forest's own predict decides), not a second run of every feature.
        proba = np.asarray(lean_predict.predict_proba(classifier, records), dtype=float)
        classes = np.asarray(classifier.classes_, dtype=int)[proba.argmax(axis=1)]
        return Predictions(
            values=classes, labels=[LABELS[c] for c in classes], proba_forte=proba[:, 1]
        )
    values = np.asarray(lean_predict.predict_values(model, records), float)
    return Predictions(values=np.clip(values, 0, None))


def load_model(
    registry: Registry, model_type: str, version: int | None = None, metric: str | None = None
) -> tuple[RecordModel, int]:
    """Load a registered version (the champion by default) and return it with its number."""
    chosen = registry.choose_version(model_type, version, metric)
    return registry.load_version(model_type, chosen), chosen


@dataclass(frozen=True)
class PredictedFile:
    """What :func:`predict_file` wrote: its rows, the version used, and the interval level
    (None: no interval, the model carries no calibration or classifies)."""

    rows: int
    version: int
    interval: float | None


def predict_file(
    registry: Registry,
    model_type: str,
    source: Path,
    destination: Path,
    version: int | None,
    interval: float = DEFAULT_LEVEL,
) -> PredictedFile:
    """Write the input records with a ``prediction`` column (and ``label`` for the classifier),
    and ``lower`` and ``upper`` bounding each prediction at the ``interval`` level when the
    model carries an interval calibration (models trained before intervals do not).

    Every record must be valid: a prediction file has one row per input row.

    Raises:
        IntervalLevelError: a level outside (0, 1); and what loading and reading raise.
    """
    interval = check_level(interval)
    model, used = load_model(registry, model_type, version)
    raw = read_records(source)
    records = require_valid(raw)
    result = predict_records(model, get_spec(model_type).task, records)
    output = raw.copy()
    output["prediction"] = result.values
    if result.labels is not None:
        output["label"] = result.labels
    calibration = calibration_of(model) if result.labels is None else None
    if calibration is not None:
        output["lower"], output["upper"] = calibration.bounds(result.values, interval)
    else:
        logger.warning("%s v%d carries no interval calibration: no intervals", model_type, used)
    write_records(output, destination)
    return PredictedFile(len(output), used, interval if calibration is not None else None)


def evaluate_file(
    registry: Registry, model_type: str, source: Path, version: int | None = None
) -> dict[str, Any]:
    """Score a registered version on a labelled file: the holdout metrics and per-counter RMSE."""
    model, used = load_model(registry, model_type, version)
    parsed = parse_records(read_records(source), require_count=True)
    if parsed.frame.empty:
        raise ValueError(f"{source}: no valid labelled records")
    task = get_spec(model_type).task
    # A JSON report, typed loosely: the command line rewrites its metrics for display.
    report: dict[str, Any] = {
        "model_type": model_type,
        "version": used,
        "data": str(source),
        "rows": len(parsed.frame),
        "rows_dropped": parsed.dropped_rows,
        "metrics": score_model(model, task, parsed.frame),
    }
    if task == "regression":
        predicted = model.predict(parsed.frame)
        report["per_counter_rmse"] = per_counter_rmse(parsed.frame, predicted)
        calibration = calibration_of(model)
        if calibration is not None:  # how its intervals hold on counts it never saw
            lower, upper = calibration.bounds(predicted, DEFAULT_LEVEL)
            counts = parsed.frame["count"].to_numpy(float)
            report["metrics"] |= interval_metrics(counts, lower, upper, DEFAULT_LEVEL)
    return report
