"""The model protocol: every model type fits and predicts on records; only a fitted affluence
classifier is a classifier, and code that needs one says so when given another model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikecount.config import Settings
from bikecount.fitting import chosen_epochs, fit_records
from bikecount.models import MODEL_TYPES, build_model, parse_params
from bikecount.models.protocol import RecordClassifier, as_classifier

SMALL_FOREST = {"n_estimators": 5, "max_leaf_nodes": 50}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_model_type_fits_and_predicts_on_records(model_type: str) -> None:
    model = build_model(model_type, parse_params(model_type, fast=True), seed=0)

    assert callable(model.fit) and callable(model.predict)
    assert not isinstance(model, RecordClassifier)  # not fitted: no classes yet


def test_a_fitted_affluence_classifier_is_a_classifier(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    params = parse_params("rf_class", SMALL_FOREST)
    model = fit_records("rf_class", params, small_frame, settings)

    classifier = as_classifier(model)
    assert classifier is model
    proba = classifier.predict_proba(small_frame.head(3))
    assert proba.shape == (3, 2) and list(classifier.classes_) == [0, 1]
    counts = small_frame["count"].head(3).to_numpy(float)
    assert set(classifier.labels_for(small_frame.head(3), counts)) <= {0, 1}


def test_a_regressor_is_no_classifier_nor_an_nn_model(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    model = fit_records("rf", parse_params("rf", SMALL_FOREST), small_frame, settings)

    assert np.all(model.predict(small_frame.head(3)) >= 0)
    with pytest.raises(TypeError, match="not a fitted classifier"):
        as_classifier(model)
    with pytest.raises(TypeError, match="not an nn model"):
        chosen_epochs(model)
