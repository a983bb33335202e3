"""A fitted model's own predictions for a few rows, without the per-call costs of its wrappers.

A model is a pipeline (records, then features, then an estimator), most of them inside a target
wrapper (log1p counts). For one row, the wrappers' bookkeeping costs more than the arithmetic:
every step validates its input and routes metadata, and a forest hands each of its trees to
joblib, which sets scikit-learn's configuration around every call. Here the same fitted steps
are called directly: the pipeline's own transformers make the features (the one feature
pipeline), the target wrapper's own inverse function makes counts of them, and a forest's trees
are summed in the order its sequential ``predict`` sums them, and an ensemble's members each
take their own lean path. The answers are the model's own;
``tests/unit/test_lean_predict.py`` holds every model type to it.

A big batch is split by rows across every core: a tree's (and so a forest's or a boosting's)
answer for a row depends on that row alone, so the floats are the same however the rows are
grouped, and the trees' compiled loops let the other threads run.

Nothing here writes to a model: requests served at once share it. A shape not known here
(another wrapper, a multi-output forest, features that are not finite) is predicted by the
model itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from bikecount import lean_boosting
from bikecount.models.affluence import AffluenceClassifier
from bikecount.models.ensemble import EnsembleRegressor, combine

# From this many rows, trees predict on every core, a share of the rows each: below it, handing
# rows to other threads costs more than it saves.
PARALLEL_ROWS = 2_000
Rows = TypeVar("Rows", np.ndarray, pd.DataFrame)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def predict_values(model: Any, records: pd.DataFrame) -> np.ndarray:
    """``model.predict(records)`` for a regressor, taking the lean path where it knows the way."""
    if isinstance(model, EnsembleRegressor) and hasattr(model, "members_"):
        # As the ensemble does: each member's answers, combined.
        return combine([predict_values(member, records) for _, member in model.members_])
    if isinstance(model, TransformedTargetRegressor) and _plain_inverse(model):
        # As the wrapper does: its inverse function on the column of the regressor's answers.
        inner = predict_values(model.regressor_, records)
        return np.asarray(model.inverse_func(inner.reshape(-1, 1))).reshape(-1)
    if not isinstance(model, Pipeline) or (features := _transform(model, records)) is None:
        return np.asarray(model.predict(records))
    estimator = model.steps[-1][1]
    matrix = _tree_inputs(estimator, features, RandomForestRegressor)
    if matrix is None:
        boosted = lean_boosting.predict_few(estimator, features)
        if boosted is not None:
            return boosted
        if lean_boosting.is_boosting(estimator) and isinstance(features, pd.DataFrame):
            return by_rows(lambda rows: np.asarray(estimator.predict(rows)), features)
        return np.asarray(estimator.predict(features))
    # A regression tree's answer is the first (only) column of its values.
    return _mean_of_trees(estimator, matrix, (len(matrix),), lambda values: values[:, 0])


def predict_proba(model: Any, records: pd.DataFrame) -> np.ndarray:
    """``model.predict_proba(records)`` for a classifier, the lean way where it knows it."""
    if isinstance(model, AffluenceClassifier):
        proba = predict_proba(model.classifier_, records)
        # A model fitted on one class only completes its columns itself.
        return proba if proba.shape[1] == 2 else np.asarray(model.predict_proba(records))
    if not isinstance(model, Pipeline) or (features := _transform(model, records)) is None:
        return np.asarray(model.predict_proba(records))
    estimator = model.steps[-1][1]
    matrix = _tree_inputs(estimator, features, RandomForestClassifier)
    if matrix is None:
        return np.asarray(estimator.predict_proba(features))
    classes = int(estimator.n_classes_)
    return _mean_of_trees(
        estimator, matrix, (len(matrix), classes), lambda values: values[:, :classes]
    )


def model_features(model: Any, records: pd.DataFrame) -> Any | None:
    """The features a model's own feature steps make of ``records``, as the lean path makes
    them (inside the target or affluence wrapper); None for a model not known here."""
    for wrapped in ("regressor_", "classifier_"):
        model = getattr(model, wrapped, model)
    return _transform(model, records) if isinstance(model, Pipeline) else None


def _plain_inverse(model: TransformedTargetRegressor) -> bool:
    """Whether the wrapper maps answers back with a plain function (as every model here does)."""
    return model.transformer is None and model.inverse_func is not None


def _transform(pipeline: Pipeline, records: pd.DataFrame) -> Any | None:
    """The features the pipeline's own transformers make of ``records`` (None: a skipped step,
    which only the pipeline knows how to pass)."""
    features: Any = records
    for _, step in pipeline.steps[:-1]:
        if step is None or isinstance(step, str):
            return None
        features = step.transform(features)
    return features


def _tree_inputs(estimator: Any, features: Any, forest_type: type[Any]) -> np.ndarray | None:
    """The features as a forest's trees read them (float32, finite, in the fitted columns'
    order); None when the estimator is no such forest or must check them itself."""
    if not isinstance(estimator, forest_type) or estimator.n_outputs_ != 1:
        return None
    names = getattr(estimator, "feature_names_in_", None)
    if not isinstance(features, pd.DataFrame) or names is None:
        return None
    if list(features.columns) != list(names):
        return None
    matrix = features.to_numpy(dtype=np.float32)
    return matrix if np.isfinite(matrix).all() else None


def _mean_of_trees(
    forest: Any,
    matrix: np.ndarray,
    shape: tuple[int, ...],
    answer: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The mean of the trees' answers, added up one tree after the other as the forest's
    sequential predict does, so that the floats are the same (a big batch a share of its rows
    on each core)."""

    def mean_of_trees(rows: np.ndarray) -> np.ndarray:
        total = np.zeros((len(rows), *shape[1:]), dtype=np.float64)
        for tree in forest.estimators_:
            total += answer(tree.tree_.predict(rows))
        total /= len(forest.estimators_)
        return total

    return by_rows(mean_of_trees, matrix)


def by_rows(predict: Callable[[Rows], np.ndarray], rows: Rows) -> np.ndarray:
    """``predict(rows)`` for a predictor that answers each row on its own: from
    ``PARALLEL_ROWS`` rows, a share of them on each core (this thread takes the first share)."""
    workers = _cores()
    if len(rows) < PARALLEL_ROWS or workers < 2:
        return predict(rows)
    bounds = np.linspace(0, len(rows), workers + 1).astype(int)
    shares: Sequence[Rows] = [
        rows.iloc[start:stop] if isinstance(rows, pd.DataFrame) else rows[start:stop]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    others: list[Future[np.ndarray]] = [_threads().submit(predict, share) for share in shares[1:]]
    first = predict(shares[0])
    return np.concatenate([first, *(future.result() for future in others)])


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_openmp_thread() -> None:
    """Keep a compiled predictor's own threads (OpenMP's, per calling thread) to one in this
    thread: the cores are shared out by rows already, and OpenMP threads spinning beside
    them would fight for the cores."""
    threadpool_limits(limits=1, user_api="openmp")


def _threads() -> ThreadPoolExecutor:
    """The threads that predict shares of big batches, one per other core, started once."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max(_cores() - 1, 1), thread_name_prefix="rows", initializer=_one_openmp_thread
            )
        return _pool
