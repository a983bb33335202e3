"""The cost estimate of a training and the limits it is checked against, before any run."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bikecount.config import Settings
from bikecount.models import HyperparameterError, parse_params
from bikecount.models.limits import (
    TrainingCostError,
    bootstrap_distinct,
    check_training_limits,
    estimate_cost,
    estimate_training_cost,
)
from bikecount.stopping import StopToken, TrainingCancelledError, TrainingTimeoutError

PARIS_ROWS = 331_830  # the real reference data, outages dropped
SETTINGS = Settings(_env_file=None)


@pytest.mark.parametrize("model_type", ["rf", "gbm", "nn", "ensemble", "rf_class"])
def test_the_defaults_are_within_the_limits_on_three_times_the_paris_data(
    model_type: str,
) -> None:
    # The evaluation fit, then the refit on every row (holdout included).
    rows = 3 * PARIS_ROWS
    cost = check_training_limits(model_type, parse_params(model_type), rows, SETTINGS, rows)
    assert 0 < cost.model_mb < SETTINGS.train_max_model_mb
    assert 0 < cost.fit_seconds < SETTINGS.train_max_fit_seconds


@pytest.mark.parametrize(
    ("model_type", "hyperparams", "limit"),
    [
        # The probe's forest: unbounded trees on every row and feature (598 MB on its data).
        (
            "rf",
            {"max_leaf_nodes": None, "min_samples_leaf": 1, "max_samples": 1, "max_features": 1},
            "BIKECOUNT_TRAIN_MAX_MODEL_MB=200",
        ),
        ("rf", {"n_estimators": 2000, "max_leaf_nodes": 100_000}, "MODEL_MB"),
        ("gbm", {"max_iter": 10000}, "BIKECOUNT_TRAIN_MAX_FIT_SECONDS=1800"),
        ("nn", {"hidden_sizes": (4096,) * 6}, "MODEL_MB"),
        ("nn", {"batch_size": 8, "max_epochs": 1000}, "FIT_SECONDS"),
    ],
)
def test_a_costly_training_is_refused_naming_its_hyperparameters_and_the_limit(
    model_type: str, hyperparams: dict[str, object], limit: str
) -> None:
    params = parse_params(model_type, hyperparams)
    with pytest.raises(TrainingCostError) as caught:
        check_training_limits(model_type, params, PARIS_ROWS, SETTINGS)
    message = str(caught.value)
    assert isinstance(caught.value, HyperparameterError)  # the API's 422 on "hyperparams"
    assert limit in message and "331,830 rows" in message
    for name in hyperparams:
        assert f"{name}=" in message


def test_the_estimate_grows_with_what_costs() -> None:
    def cost(model_type: str, rows: int = PARIS_ROWS, **hyperparams: object) -> tuple:
        estimate = estimate_cost(model_type, parse_params(model_type, hyperparams), rows)
        return estimate.model_mb, estimate.fit_seconds

    assert cost("rf", n_estimators=80) > cost("rf", n_estimators=40)
    assert cost("rf", max_leaf_nodes=30000) > cost("rf", max_leaf_nodes=3000)
    assert cost("rf", rows=2 * PARIS_ROWS)[1] > cost("rf")[1]
    assert cost("gbm", max_iter=800)[1] > cost("gbm")[1]
    assert cost("nn", max_epochs=80)[1] > cost("nn")[1]
    # A forest's trees cannot have more leaves than their bootstrap samples have rows.
    tiny = estimate_cost("rf", parse_params("rf", {"max_leaf_nodes": None}), 1000)
    assert tiny.model_mb * 1e6 <= 40 * 2 * bootstrap_distinct(1000, 0.3) / 5 * 80


def test_the_refit_adds_its_fit_time_but_no_second_model() -> None:
    params = parse_params("gbm")
    once = estimate_cost("gbm", params, PARIS_ROWS)
    with_refit = estimate_training_cost("gbm", params, PARIS_ROWS, PARIS_ROWS)
    assert with_refit.fit_seconds == pytest.approx(2 * once.fit_seconds)
    assert with_refit.model_mb == once.model_mb
    assert "331,830 rows then refitted on 331,830" in with_refit.describe()
    # nn's refit is counted at max_epochs, as many as its early stopping may choose.
    nn = parse_params("nn", {"refit": False})
    nn_once = estimate_cost("nn", nn, PARIS_ROWS)
    nn_refit = estimate_training_cost("nn", nn, PARIS_ROWS, PARIS_ROWS)
    assert nn_refit.fit_seconds == pytest.approx(2 * nn_once.fit_seconds)


def test_a_training_refused_only_for_its_refit_names_both_fits() -> None:
    params = parse_params("gbm", {"max_iter": 600})
    settings = Settings(_env_file=None, train_max_fit_seconds=1.5 * estimate_time(params))
    check_training_limits("gbm", params, PARIS_ROWS, settings)
    with pytest.raises(TrainingCostError, match="then refitted on"):
        check_training_limits("gbm", params, PARIS_ROWS, settings, PARIS_ROWS)


def estimate_time(params: BaseModel) -> float:
    return estimate_cost("gbm", params, PARIS_ROWS).fit_seconds


def test_nn_needs_rows_on_both_sides_of_its_validation_slice() -> None:
    with pytest.raises(HyperparameterError, match="validation_fraction=0.1 of 3 training rows"):
        check_training_limits("nn", parse_params("nn"), 3, SETTINGS)
    check_training_limits("nn", parse_params("nn"), 10, SETTINGS)
    check_training_limits("rf", parse_params("rf"), 3, SETTINGS)
    # A fixed epoch count (the refit of a registered model) holds no row out.
    check_training_limits("nn", parse_params("nn", {"epochs": 3}), 3, SETTINGS)


def test_the_limits_are_settings() -> None:
    strict = Settings(_env_file=None, train_max_fit_seconds=1, train_max_model_mb=1000)
    with pytest.raises(TrainingCostError, match="BIKECOUNT_TRAIN_MAX_FIT_SECONDS=1"):
        check_training_limits("gbm", parse_params("gbm"), PARIS_ROWS, strict)


def test_a_stop_token_stops_on_cancel_or_after_its_time_limit() -> None:
    now = [0.0]
    token = StopToken(time_limit=10, clock=lambda: now[0])
    token.check("fitting")
    now[0] = 10.0
    with pytest.raises(TrainingTimeoutError, match="time limit of 10 s .* while fitting"):
        token.check("fitting")
    cancelled = StopToken()
    cancelled.cancel("cancelled by a test")
    with pytest.raises(TrainingCancelledError, match=r"cancelled by a test \(scoring\)"):
        cancelled.check("scoring")


def test_an_estimate_takes_the_hyperparameters_of_its_model_type() -> None:
    with pytest.raises(TypeError, match="expected BoostingParams, got ForestParams"):
        estimate_cost("gbm", parse_params("rf"), PARIS_ROWS)
