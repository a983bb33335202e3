"""The model catalogue: hyperparameter parsing (defaults, fast mode, strings), errors, builders."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError
from sklearn.base import is_classifier, is_regressor

from bikecount.config import Settings
from bikecount.models import (
    MODEL_TYPES,
    HyperparameterError,
    UnknownModelTypeError,
    build_model,
    get_spec,
    parse_params,
)
from bikecount.models.catalog import (
    CLASSIFIER_TYPES,
    REGRESSOR_TYPES,
    ModelType,
    parse_assignments,
)

FOREST_DEFAULTS = {
    "n_estimators": 40,
    "max_depth": None,
    "max_leaf_nodes": 3000,
    "min_samples_leaf": 5,
    "max_features": 0.8,
    "max_samples": 0.3,
    "n_jobs": -1,
}
BOOSTING_DEFAULTS = {
    "max_iter": 400,
    "learning_rate": 0.1,
    "max_leaf_nodes": 63,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "loss": "squared_error",
}


def test_model_types_and_their_specs() -> None:
    assert set(MODEL_TYPES) == {"rf", "gbm", "nn", "ensemble", "rf_class"}
    tasks = {model_type: get_spec(model_type).task for model_type in MODEL_TYPES}
    assert tasks == {
        "rf": "regression",
        "gbm": "regression",
        "nn": "regression",
        "ensemble": "regression",
        "rf_class": "classification",
    }


def test_the_regressor_and_classifier_lists_follow_the_specs_tasks() -> None:
    """The one list of types is split by task in the types too (the settings and the legacy API
    use the parts); each part must agree with the specs."""
    assert MODEL_TYPES == REGRESSOR_TYPES + CLASSIFIER_TYPES
    assert {get_spec(t).task for t in REGRESSOR_TYPES} == {"regression"}
    assert {get_spec(t).task for t in CLASSIFIER_TYPES} == {"classification"}
    assert typing.get_args(ModelType) == MODEL_TYPES


def test_the_pipeline_runs_regressors_only() -> None:
    with pytest.raises(ValidationError, match="pipeline_model_type"):
        Settings(_env_file=None, pipeline_model_type="rf_class")
    assert get_spec("nn").torch and not get_spec("rf").torch


@pytest.mark.parametrize(
    ("model_type", "defaults"),
    [("rf", FOREST_DEFAULTS), ("rf_class", FOREST_DEFAULTS), ("gbm", BOOSTING_DEFAULTS)],
)
def test_defaults(model_type: str, defaults: dict) -> None:
    assert parse_params(model_type).model_dump() == defaults


@pytest.mark.parametrize(
    ("model_type", "fast"),
    [
        ("rf", {"n_estimators": 20, "max_leaf_nodes": 500}),
        ("rf_class", {"n_estimators": 20, "max_leaf_nodes": 500}),
        ("gbm", {"max_iter": 60}),
        ("nn", {"max_epochs": 5, "patience": 2}),
    ],
)
def test_fast_settings_are_applied_in_test_mode(model_type: str, fast: dict) -> None:
    params = parse_params(model_type, fast=True).model_dump()
    defaults = parse_params(model_type).model_dump()

    assert {key: params[key] for key in fast} == fast
    assert {k: v for k, v in params.items() if k not in fast} == {
        k: v for k, v in defaults.items() if k not in fast
    }


def test_overrides_win_over_fast_settings() -> None:
    params = parse_params("rf", {"n_estimators": "5"}, fast=True)

    assert (params.n_estimators, params.max_leaf_nodes) == (5, 500)


@pytest.mark.parametrize(
    ("model_type", "overrides", "expected"),
    [
        ("rf", {"n_estimators": "200"}, {"n_estimators": 200}),
        ("rf", {"max_depth": "none"}, {"max_depth": None}),
        ("rf", {"max_depth": "None", "max_leaf_nodes": " NULL "}, {"max_leaf_nodes": None}),
        ("rf", {"max_features": "0.5", "max_samples": "1"}, {"max_features": 0.5}),
        ("rf", {"max_depth": "12"}, {"max_depth": 12}),
        ("gbm", {"learning_rate": "0.05", "loss": "squared_error"}, {"learning_rate": 0.05}),
        ("nn", {"hidden_sizes": [32, 16]}, {"hidden_sizes": (32, 16)}),
    ],
)
def test_string_values_are_coerced(model_type: str, overrides: dict, expected: dict) -> None:
    params = parse_params(model_type, overrides).model_dump()

    assert {key: params[key] for key in expected} == expected
    assert all(not isinstance(params[key], str) or key == "loss" for key in overrides)


@pytest.mark.parametrize(
    ("model_type", "overrides", "named"),
    [
        ("rf", {"n_estimatorz": 10}, "n_estimatorz: unknown hyperparameter"),
        ("gbm", {"n_estimators": 10}, "n_estimators: unknown hyperparameter"),
        ("rf", {"n_estimators": "many"}, "n_estimators"),
        ("rf", {"n_estimators": 2.5}, "n_estimators"),
        ("rf", {"n_estimators": "none"}, "n_estimators"),
        ("rf", {"n_estimators": 0}, "n_estimators"),
        ("rf", {"n_estimators": 5000}, "n_estimators"),
        ("rf", {"max_features": 1.5}, "max_features"),
        ("rf", {"max_leaf_nodes": 1}, "max_leaf_nodes"),
        ("gbm", {"learning_rate": "0"}, "learning_rate"),
        ("gbm", {"loss": "absolute_error"}, "loss"),
        ("rf_class", {"min_samples_leaf": -1}, "min_samples_leaf"),
        ("nn", {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_hyperparameters_name_the_key_and_list_known_ones(
    model_type: str, overrides: dict, named: str
) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_params(model_type, overrides)

    message = str(caught.value)
    assert message.startswith(f"invalid hyperparameters for {model_type}:")
    assert named in message
    known = ", ".join(get_spec(model_type).params.model_fields)
    assert message.endswith(f"(known: {known})")


@pytest.mark.parametrize(
    ("model_type", "overrides", "named"),
    [
        ("rf", {"n_estimators": True}, "n_estimators: Value error, expected a number, not a"),
        ("rf", {"n_estimators": False}, "n_estimators"),
        ("rf", {"n_jobs": 0}, "n_jobs: Value error, n_jobs is -1 (every core) or 1 to 64"),
        ("rf", {"n_jobs": -2}, "n_jobs"),
        ("rf", {"n_jobs": 1000}, "n_jobs"),
        ("rf", {"n_jobs": True}, "n_jobs"),
        ("rf", {"max_depth": 10**30}, "max_depth"),
        ("rf", {"max_leaf_nodes": 2**64}, "max_leaf_nodes"),
        ("rf", {"min_samples_leaf": 10**400}, "min_samples_leaf"),
        ("rf", {"max_features": True}, "max_features"),
        ("rf", {"max_samples": float("nan")}, "max_samples"),
        ("rf_class", {"n_jobs": 0}, "n_jobs"),
        ("gbm", {"max_iter": True}, "max_iter"),
        ("gbm", {"l2_regularization": float("inf")}, "l2_regularization"),
        ("gbm", {"learning_rate": float("nan")}, "learning_rate"),
        ("gbm", {"max_leaf_nodes": 10**12}, "max_leaf_nodes"),
        ("nn", {"hidden_sizes": [True, 16]}, "hidden_sizes.0"),
        ("nn", {"refit": 1}, "refit: Value error, expected true or false"),
        ("nn", {"dropout": False}, "dropout"),
        ("nn", {"batch_size": 2**70}, "batch_size"),
    ],
)
def test_every_hyperparameter_is_strictly_typed_and_bounded(
    model_type: str, overrides: dict, named: str
) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_params(model_type, overrides)
    assert named in str(caught.value)


def test_command_line_strings_still_parse() -> None:
    assert parse_params("rf", {"n_jobs": "2", "n_estimators": "7"}).model_dump()["n_jobs"] == 2
    assert parse_params("nn", {"refit": "false"}).model_dump()["refit"] is False
    assert parse_params("nn", {"refit": True}).model_dump()["refit"] is True


def test_bad_value_message_shows_the_value_given() -> None:
    with pytest.raises(HyperparameterError, match=r"n_estimators: .*\(got 'many'\)"):
        parse_params("rf", {"n_estimators": "many"})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_params("rf", {"n_estimators": 0, "colour": "red"})

    assert "n_estimators:" in str(caught.value)
    assert "colour: unknown hyperparameter" in str(caught.value)


@pytest.mark.parametrize("call", [get_spec, parse_params])
def test_unknown_model_type_lists_the_valid_ones(call) -> None:
    with pytest.raises(UnknownModelTypeError) as caught:
        call("xgboost")

    assert str(caught.value) == (
        "unknown model type 'xgboost'; expected one of rf, gbm, nn, ensemble, rf_class"
    )


def test_unknown_model_type_is_a_value_error() -> None:
    assert issubclass(UnknownModelTypeError, ValueError)
    assert issubclass(HyperparameterError, ValueError)


@pytest.mark.parametrize(
    ("model_type", "check", "estimator_param"),
    [
        ("rf", is_regressor, "n_estimators"),
        ("gbm", is_regressor, "max_iter"),
        ("rf_class", is_classifier, "n_estimators"),
    ],
)
def test_build_model_passes_params_and_seed(model_type: str, check, estimator_param: str) -> None:
    params = parse_params(model_type, fast=True)

    model = build_model(model_type, params, seed=7)

    assert check(model)
    inner = {
        key.rsplit("__", 1)[-1]: value
        for key, value in model.get_params().items()
        if key.endswith(("__" + estimator_param, "__random_state"))
    }
    assert inner == {estimator_param: getattr(params, estimator_param), "random_state": 7}


# --- parse_assignments ---------------------------------------------------------------------


def test_assignments_become_a_dict_of_strings() -> None:
    pairs = ["n_estimators=200", " max_depth = none ", "loss=a=b"]

    assert parse_assignments(pairs) == {"n_estimators": "200", "max_depth": "none", "loss": "a=b"}


@pytest.mark.parametrize("pair", ["foo", "=5", " = 5", ""])
def test_assignment_without_name_or_equals_sign_is_an_error(pair: str) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_assignments(["n_estimators=10", pair])

    assert repr(pair) in str(caught.value)
    assert "NAME=VALUE" in str(caught.value)


def test_assignments_feed_parse_params() -> None:
    params = parse_params("rf", parse_assignments(["n_estimators=200", "max_depth=none"]))

    assert (params.n_estimators, params.max_depth) == (200, None)


def test_models_are_tuned_to_predict_on_one_thread() -> None:
    from bikecount.inference import tune_for_serving
    from bikecount.models.affluence import AffluenceClassifier

    for model_type in ("rf", "rf_class"):
        model = build_model(model_type, parse_params(model_type, fast=True), seed=0)
        # Fitted attributes as fit would leave them, without the cost of fitting.
        if isinstance(model, AffluenceClassifier):
            model.classifier_ = model.classifier
            forest = model.classifier_.steps[-1][1]
        else:
            model.regressor_ = model.regressor
            forest = model.regressor_.steps[-1][1]
        assert forest.n_jobs == -1

        tune_for_serving(model)

        assert forest.n_jobs == 1
