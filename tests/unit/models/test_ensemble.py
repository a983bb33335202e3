"""The ``ensemble`` model: its members' hyperparameters, prefixed, and the mean of their answers
on log1p(count), served through each member's lean path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bikecount import lean_predict
from bikecount.models import HyperparameterError, build_model, parse_params
from bikecount.models.ensemble import OWN_DEFAULTS, EnsembleRegressor, combine, member_params
from bikecount.models.limits import estimate_cost

RELATIVE = 1e-6


def test_the_hyperparameters_are_the_members_own_prefixed() -> None:
    params = parse_params("ensemble").model_dump()
    # Its own default (tuned day ahead): a Poisson gbm; every other is the member's.
    assert OWN_DEFAULTS == {"gbm_loss": "poisson"} and params["gbm_loss"] == "poisson"
    for member in ("rf", "gbm"):
        own = parse_params(member).model_dump()
        inherited = {k: v for k, v in own.items() if f"{member}_{k}" not in OWN_DEFAULTS}
        assert {k: params[f"{member}_{k}"] for k in inherited} == inherited
    assert len(params) == len(parse_params("rf").model_dump()) + len(
        parse_params("gbm").model_dump()
    )
    fast = parse_params("ensemble", fast=True).model_dump()
    assert fast["rf_n_estimators"] == parse_params("rf", fast=True).model_dump()["n_estimators"]
    assert fast["gbm_max_iter"] == parse_params("gbm", fast=True).model_dump()["max_iter"]
    # Strings from the command line, as for every model type.
    overridden = parse_params("ensemble", {"gbm_learning_rate": "0.05", "rf_max_depth": "none"})
    assert overridden.model_dump()["gbm_learning_rate"] == 0.05
    assert overridden.model_dump()["rf_max_depth"] is None


@pytest.mark.parametrize(
    ("hyperparams", "named"),
    [
        ({"n_estimators": 10}, "n_estimators: unknown hyperparameter"),
        ({"rf_n_estimators": 0}, "rf_n_estimators: Input should be greater than or equal to 1"),
        ({"gbm_loss": "huber"}, "gbm_loss: String should match pattern"),
        ({"gbm_max_iter": True}, "gbm_max_iter: Value error, expected a number"),
        # A member's own check of its value (rf's validator), named with the prefix.
        ({"rf_n_jobs": 0}, "rf_n_jobs: n_jobs is -1 (every core) or 1 to 64, not 0 (got 0)"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_prefixed_field(
    hyperparams: dict[str, object], named: str
) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_params("ensemble", hyperparams)
    assert str(caught.value).startswith(f"invalid hyperparameters for ensemble: {named}")


def test_combine_is_the_mean_on_log1p_counts() -> None:
    combined = combine([np.array([0.0, 3.0, 24.0]), np.array([0.0, 15.0, 0.0])])
    np.testing.assert_allclose(combined, [0.0, 7.0, 4.0], rtol=1e-12)


@pytest.fixture(scope="module")
def ensemble(small_frame: pd.DataFrame) -> Any:
    model = build_model("ensemble", parse_params("ensemble", fast=True), seed=5)
    return model.fit(small_frame, small_frame["count"].to_numpy())


def test_the_ensemble_predicts_the_mean_of_its_members_fitted_alone(
    ensemble: Any, small_frame: pd.DataFrame
) -> None:
    assert isinstance(ensemble, EnsembleRegressor)
    counts = small_frame["count"].to_numpy()
    own = member_params(parse_params("ensemble", fast=True))
    alone = [build_model(member, own[member], seed=5).fit(small_frame, counts) for member in own]
    later = small_frame.tail(200)
    log_mean = np.mean([np.log1p(model.predict(later)) for model in alone], axis=0)
    np.testing.assert_allclose(ensemble.predict(later), np.expm1(log_mean), rtol=RELATIVE)
    assert (ensemble.predict(later) >= 0).all()


def test_the_lean_path_answers_what_the_ensemble_answers(
    ensemble: Any, small_frame: pd.DataFrame
) -> None:
    for rows in (small_frame.iloc[:1], small_frame.iloc[100:124], small_frame.iloc[:500]):
        np.testing.assert_allclose(
            lean_predict.predict_values(ensemble, rows),
            ensemble.predict(rows),
            rtol=RELATIVE,
            atol=0,
        )


def test_the_cost_is_the_members_added_up() -> None:
    rows = 300_000
    params = parse_params("ensemble", {"rf_n_estimators": 80, "gbm_max_iter": 100})
    cost = estimate_cost("ensemble", params, rows)
    rf = estimate_cost("rf", parse_params("rf", {"n_estimators": 80}), rows)
    gbm = estimate_cost("gbm", parse_params("gbm", {"max_iter": 100}), rows)
    assert cost.model_mb == pytest.approx(rf.model_mb + gbm.model_mb)
    assert rf.fit_seconds < cost.fit_seconds < rf.fit_seconds + gbm.fit_seconds
    assert cost.drivers["rf_n_estimators"] == 80 and cost.drivers["gbm_max_iter"] == 100
