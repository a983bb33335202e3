"""``rf_class``: the affluence classifier. A record is ``forte`` (1) when its count is above its
counter's mean in the training data, else ``faible`` (0).

The per-counter thresholds are learned at fit time and stored in the model, so the labels of new
data are judged against the same bar.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.validation import check_is_fitted

from bikecount.features import RecordParser
from bikecount.models.trees import ForestParams, with_features
from bikecount.records import COUNTER_COLUMN

Label = Literal["faible", "forte"]
LABELS: tuple[Label, Label] = ("faible", "forte")


class AffluenceClassifier(ClassifierMixin, BaseEstimator):
    """Learns per-counter thresholds from counts, then classifies records above/below them.

    ``fit`` takes records and their counts; ``predict`` gives 0 (faible) or 1 (forte).
    """

    def __init__(self, classifier: BaseEstimator | None = None) -> None:
        self.classifier = classifier

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> AffluenceClassifier:
        records = RecordParser().fit_transform(X)
        counts = np.asarray(y, dtype=float)
        self.thresholds_ = pd.Series(counts).groupby(records[COUNTER_COLUMN].to_numpy()).mean()
        self.default_threshold_ = float(counts.mean())
        labels = self.labels_for(records, counts)
        self.classifier_ = clone(self.classifier).fit(records, labels)
        self.classes_ = np.array([0, 1])
        return self

    def labels_for(self, X: pd.DataFrame, counts: np.ndarray) -> np.ndarray:
        """The true labels of counted records: 1 where the count is above the counter's mean.

        A counter unseen in training is judged against the overall training mean.
        """
        check_is_fitted(self, "thresholds_")
        records = RecordParser().fit_transform(X)
        bar = records[COUNTER_COLUMN].map(self.thresholds_).fillna(self.default_threshold_)
        return (np.asarray(counts, dtype=float) > bar.to_numpy()).astype(int)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The likelier class of :meth:`predict_proba`: callers that need both ask for the
        probabilities once and take the labels from them, as this does."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        proba = self.classifier_.predict_proba(X)
        if proba.shape[1] == 2:
            return proba
        # Trained on one class only (tiny data): the other class has probability zero.
        full = np.zeros((proba.shape[0], 2))
        full[:, int(self.classifier_.classes_[0])] = 1.0
        return full


def build_affluence(params: ForestParams, seed: int) -> AffluenceClassifier:
    forest = RandomForestClassifier(**params.model_dump(), random_state=seed)
    return AffluenceClassifier(classifier=with_features(forest))
