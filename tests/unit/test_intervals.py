"""Prediction intervals (bikecount.intervals): coverage, levels, groups and the model's carrier."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from bikecount.intervals import (
    IntervalLevelError,
    NoCalibrationError,
    attach_calibration,
    calibrate,
    calibration_of,
    check_level,
    interval_metrics,
    model_bounds,
)


def noisy_counts(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts from 1 to 500 bikes, and counts scattered around them: Poisson noise (wide in
    log1p units when counts are few) times a day-to-day factor."""
    predictions = np.exp(rng.uniform(0, np.log(500), rows))
    counts = rng.poisson(predictions * rng.lognormal(0, 0.2, rows)).astype(float)
    return counts, predictions


def test_intervals_cover_new_counts_at_the_level_asked() -> None:
    rng = np.random.default_rng(3)
    calibration = calibrate(*noisy_counts(rng, 20_000), source="test")
    counts, predictions = noisy_counts(rng, 20_000)

    for level in (0.5, 0.8, 0.95):
        lower, upper = calibration.bounds(predictions, level)
        coverage = interval_metrics(counts, lower, upper, level)["interval_coverage"]
        assert coverage == pytest.approx(level, abs=0.015)


def test_quiet_hours_get_wider_intervals_in_log1p_than_busy_ones() -> None:
    rng = np.random.default_rng(4)
    calibration = calibrate(*noisy_counts(rng, 20_000), source="test")

    lower, upper = calibration.bounds(np.array([3.0, 300.0]), 0.8)

    width = np.log1p(upper) - np.log1p(lower)
    assert width[0] > 2 * width[1]
    # Each group holds a share of the residuals, none empty.
    assert len(calibration.sizes) > 1
    assert (calibration.sizes >= 50).all()
    assert calibration.residuals == 20_000


def test_intervals_widen_with_the_level_and_hold_the_prediction() -> None:
    rng = np.random.default_rng(5)
    calibration = calibrate(*noisy_counts(rng, 5_000), source="test")
    predictions = np.array([0.0, 2.0, 40.0, 400.0])

    bounds = [calibration.bounds(predictions, level) for level in (0.5, 0.8, 0.95)]

    for (low, high), (wider_low, wider_high) in zip(bounds, bounds[1:], strict=False):
        assert (wider_low <= low).all() and (wider_high >= high).all()
    low, high = bounds[1]
    assert (low >= 0).all()
    assert (low <= predictions).all() and (predictions <= high).all()


def test_few_residuals_make_one_group_and_a_cautious_interval() -> None:
    calibration = calibrate(np.array([10.0, 12.0, 8.0]), np.array([10.0, 10.0, 10.0]), "test")

    lower, upper = calibration.bounds(np.array([10.0]), 0.8)

    assert len(calibration.sizes) == 1
    # Three residuals cannot vouch for 80%: the interval spans all of them.
    assert lower[0] == pytest.approx(8.0) and upper[0] == pytest.approx(12.0)


def test_counts_without_forecast_are_left_out_and_none_at_all_is_refused() -> None:
    calibration = calibrate(np.array([5.0, np.nan]), np.array([5.0, 7.0]), "test")
    assert calibration.residuals == 1
    with pytest.raises(ValueError, match="no counted forecast"):
        calibrate(np.array([np.nan]), np.array([5.0]), "test")


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.2, float("nan"), True, "0.8", None])
def test_bad_levels_are_refused_with_the_reason(level: object) -> None:
    with pytest.raises(IntervalLevelError, match="interval level must be"):
        check_level(level)


def test_a_bad_level_is_refused_by_the_bounds_too() -> None:
    calibration = calibrate(np.array([5.0, 6.0]), np.array([5.0, 5.0]), "test")
    with pytest.raises(IntervalLevelError):
        calibration.bounds(np.array([5.0]), 1.0)


def test_the_calibration_travels_with_a_pickled_model() -> None:
    model = DummyRegressor().fit(np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(NoCalibrationError, match="train a new version"):
        model_bounds(model, np.array([2.0]), 0.8, "gbm v1")
    attach_calibration(model, calibrate(np.array([1.0, 2.0, 3.0]), np.full(3, 2.0), "holdout"))

    loaded = pickle.loads(pickle.dumps(model))

    calibration = calibration_of(loaded)
    assert calibration is not None and calibration.source == "holdout"
    lower, upper = model_bounds(loaded, np.array([2.0]), 0.8)
    assert lower[0] <= 2.0 <= upper[0]


def test_metrics_count_the_counts_inside_and_the_width_in_log1p() -> None:
    counts = np.array([5.0, 10.0, 20.0, np.nan])
    lower, upper = np.array([4.0, 11.0, 10.0, 1.0]), np.array([6.0, 12.0, 20.0, 2.0])

    metrics = interval_metrics(counts, lower, upper, 0.8)

    assert metrics["interval_level"] == 0.8
    assert metrics["interval_coverage"] == pytest.approx(2 / 3)
    expected = np.mean(np.log1p([6.0, 12.0, 20.0]) - np.log1p([4.0, 11.0, 10.0]))
    assert metrics["interval_width_log1p"] == pytest.approx(expected)


def test_a_centred_calibration_keeps_the_spread_and_drops_the_bias() -> None:
    rng = np.random.default_rng(6)
    counts, predictions = noisy_counts(rng, 5_000)
    biased = predictions * 1.5  # forecasts that ran high: residuals below zero

    plain = calibrate(counts, biased, "test")
    centred = calibrate(counts, biased, "test", centred=True)

    low, high = plain.offsets(np.array([100.0]), 0.8)
    centred_low, centred_high = centred.offsets(np.array([100.0]), 0.8)
    assert high[0] < 0 < centred_high[0] and centred_low[0] < 0
    assert centred_high[0] - centred_low[0] == pytest.approx(high[0] - low[0])
