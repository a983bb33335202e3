"""The catalogue of model types: their hyperparameters, fast settings and builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

# The names live in their own module (the settings import them too); re-exported here, with
# the specs they name.
from bikecount.model_types import (
    CLASSIFIER_TYPES,
    MODEL_TYPES,
    REGRESSOR_TYPES,
    ClassifierType,
    ModelType,
    RegressorType,
    Task,
)
from bikecount.models.param_types import ParamValue
from bikecount.models.protocol import RecordModel

__all__ = [
    "CLASSIFIER_TYPES",
    "MODEL_TYPES",
    "REGRESSOR_TYPES",
    "AnySpec",
    "ClassifierType",
    "HyperparameterError",
    "ModelSpec",
    "ModelType",
    "RegressorType",
    "Task",
    "UnknownModelTypeError",
    "build_model",
    "get_spec",
    "parse_assignments",
    "parse_params",
    "stops_early",
]


class UnknownModelTypeError(ValueError):
    """A model type that bikecount does not have."""


class HyperparameterError(ValueError):
    """Hyperparameters that are unknown or of the wrong type or range."""


ParamsT = TypeVar("ParamsT", bound=BaseModel)


@dataclass(frozen=True)
class ModelSpec(Generic[ParamsT]):
    """What bikecount knows about one model type: ``build`` takes the type's own ``params``
    and a seed, and gives an unfitted model."""

    name: ModelType
    task: Task
    description: str
    params: type[ParamsT]
    build: Callable[[ParamsT, int], RecordModel]
    fast_params: Mapping[str, ParamValue] = field(default_factory=dict)
    torch: bool = False


# The spec of some model type: its builder takes the params of that type, which only
# parse_params makes (with the same spec), so the params type is left open here.
AnySpec = ModelSpec[Any]


def _specs() -> dict[str, AnySpec]:
    # Imported here so that listing model types does not import PyTorch.
    from bikecount.models.affluence import build_affluence
    from bikecount.models.ensemble import EnsembleParams, build_ensemble, ensemble_fast_params
    from bikecount.models.neural import build_nn_model
    from bikecount.models.nn_network import NNParams
    from bikecount.models.trees import BoostingParams, ForestParams, build_boosting, build_forest

    # Fast settings (test mode): fits in seconds.
    fast_forest: dict[str, ParamValue] = {"n_estimators": 20, "max_leaf_nodes": 500}
    fast_boosting: dict[str, ParamValue] = {"max_iter": 60}
    # Each spec made on its own, so the type checker sees that its builder takes its params.
    specs = (
        ModelSpec(
            "rf",
            "regression",
            "random forest regressor",
            ForestParams,
            build_forest,
            fast_forest,
        ),
        ModelSpec(
            "gbm",
            "regression",
            "gradient-boosted trees (histogram)",
            BoostingParams,
            build_boosting,
            fast_boosting,
        ),
        ModelSpec(
            "nn",
            "regression",
            "PyTorch network with a counter embedding",
            NNParams,
            build_nn_model,
            {"max_epochs": 5, "patience": 2},
            torch=True,
        ),
        ModelSpec(
            "ensemble",
            "regression",
            "mean of rf and gbm (on log1p counts)",
            EnsembleParams,
            build_ensemble,
            ensemble_fast_params({"rf": fast_forest, "gbm": fast_boosting}),
        ),
        ModelSpec(
            "rf_class",
            "classification",
            "affluence classifier (faible/forte)",
            ForestParams,
            build_affluence,
            fast_forest,
        ),
    )
    return {spec.name: spec for spec in specs}


def get_spec(model_type: str) -> AnySpec:
    """The spec of a model type, or UnknownModelTypeError naming the valid ones."""
    if model_type not in MODEL_TYPES:
        raise UnknownModelTypeError(
            f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}"
        )
    return _specs()[model_type]


def parse_params(
    model_type: str, overrides: Mapping[str, object] | None = None, *, fast: bool = False
) -> BaseModel:
    """Defaults of a model type, then its fast settings (test mode), then the user's overrides.

    Values may be strings (from the command line): ``"200"`` becomes 200 where an int is expected,
    ``"none"`` becomes None.

    Raises:
        HyperparameterError: an unknown name, or a value of the wrong type or range.
    """
    spec = get_spec(model_type)
    # Anything: pydantic validates it.
    values: dict[str, object] = dict(spec.fast_params) if fast else {}
    values.update({key: _none_if_null(value) for key, value in (overrides or {}).items()})
    try:
        return spec.params(**values)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        known = ", ".join(spec.params.model_fields)
        raise HyperparameterError(
            f"invalid hyperparameters for {model_type}: {problems} (known: {known})"
        ) from None


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if not where:  # a check of several values together (the ensemble's members) names them
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {_reason(error)}"


def _reason(error: Mapping[str, object]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown hyperparameter"
    return f"{error['msg']} (got {error.get('input')!r})"


def _none_if_null(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in {"none", "null"}:
        return None
    return value


def build_model(model_type: str, params: BaseModel, seed: int) -> RecordModel:
    """An unfitted estimator of ``model_type`` that fits and predicts on raw records."""
    return get_spec(model_type).build(params, seed)


def stops_early(model_type: str, params: BaseModel) -> bool:
    """Whether the model chooses its epoch count by early stopping on a slice of its rows
    (``nn`` without a fixed ``epochs``): a refit on every row, with no rows left to stop on,
    then trains for the count the evaluation fit chose."""
    return model_type == "nn" and params.model_dump().get("epochs") is None


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["n_estimators=200", "max_depth=none"]`` -> a dict; a pair without ``=`` is an error."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HyperparameterError(
                f"--param {pair!r}: expected NAME=VALUE, e.g. n_estimators=200"
            )
        result[key.strip()] = value.strip()
    return result
