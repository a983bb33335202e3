"""``POST /predict``'s intervals from the served model's calibration, and models without one."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from bikecount.api.errors import ApiError
from bikecount.api.model_cache import ServedModel
from bikecount.api.routes.predict import interval_lists
from bikecount.intervals import attach_calibration, calibrate


def served(calibrated: bool) -> ServedModel:
    model = DummyRegressor().fit(np.zeros((4, 1)), np.array([8.0, 10.0, 12.0, 10.0]))
    if calibrated:
        counts = np.array([6.0, 9.0, 10.0, 11.0, 15.0])
        attach_calibration(model, calibrate(counts, np.full(5, 10.0), "holdout"))
    return ServedModel(model_type="gbm", version=4, task="regression", model=model)


def test_intervals_come_from_the_served_models_calibration() -> None:
    lower, upper = interval_lists(served(calibrated=True), np.array([10.0, 0.0]), 0.8)

    assert lower[0] <= 10.0 <= upper[0]
    assert lower[1] == 0.0  # never below zero bikes
    assert isinstance(lower[0], float)


def test_a_version_trained_before_intervals_is_409_saying_how_to_get_them() -> None:
    with pytest.raises(ApiError) as raised:
        interval_lists(served(calibrated=False), np.array([10.0]), 0.8)

    assert raised.value.status_code == 409
    assert "gbm v4 carries no interval calibration" in str(raised.value.detail)
    assert "train a new version" in str(raised.value.detail)
