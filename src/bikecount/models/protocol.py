"""What a bikecount model offers the rest of the code: fit and predict on records.

Every model type of :mod:`bikecount.models.catalog` (``rf``, ``gbm``, ``nn``, ``ensemble`` and the
``rf_class`` classifier) is a scikit-learn estimator that takes raw or canonical records: the
feature pipeline is inside it. scikit-learn states no types, so these protocols state the part of
its contract that bikecount relies on; fitting, scoring, the registry and the API type a model
with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

if TYPE_CHECKING:  # listing model types (the settings do) must not import pandas
    import numpy as np
    import pandas as pd


class RecordModel(Protocol):
    """A model that fits on records and their counts, and predicts one value per record.

    ``fit`` returns the model itself, fitted (scikit-learn's contract). ``predict`` gives counts
    (regressors, never negative) or classes (0 faible, 1 forte), in input order.
    """

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self: ...

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...


@runtime_checkable
class RecordClassifier(RecordModel, Protocol):
    """A fitted affluence classifier (``rf_class``): its classes, their probabilities, and the
    true labels of counted records, judged against the thresholds it learned."""

    classes_: np.ndarray

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...

    def labels_for(self, X: pd.DataFrame, counts: np.ndarray) -> np.ndarray: ...


def as_classifier(model: RecordModel) -> RecordClassifier:
    """``model`` as a classifier, for the code that a task of ``classification`` leads to.

    Raises:
        TypeError: the model is no fitted classifier (a regressor, or a classifier not fitted).
    """
    if not isinstance(model, RecordClassifier):
        raise TypeError(
            f"{type(model).__name__} is not a fitted classifier "
            "(it lacks classes_, predict_proba or labels_for)"
        )
    return model
