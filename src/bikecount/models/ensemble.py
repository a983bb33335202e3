"""The ``ensemble`` model: the mean of ``rf`` and ``gbm``, each with its own hyperparameters.

Day ahead, the two trees' errors differ enough that their mean forecasts better than either
(docs/benchmarks.md). The mean is taken on log1p(count), the scale the models are judged on
(RMSE log1p) and that ``rf`` learns: a geometric mean of the counts, less pulled by the one
member that overshoots a quiet hour than the plain mean.

The hyperparameters are the members' own, named with the member's prefix
(``rf_n_estimators``, ``gbm_learning_rate``): one flat set, as the command line (``--param``),
``POST /train`` and MLflow take hyperparameters. Their ranges and fast settings are the
members' (:func:`ensemble_params`), and so are their defaults, except where the ensemble was
tuned on its own (:data:`OWN_DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError, create_model, model_validator
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from bikecount.models.param_types import PARAMS_CONFIG, ParamValue
from bikecount.models.protocol import RecordModel
from bikecount.models.targets import expm1_clipped
from bikecount.models.trees import BoostingParams, ForestParams, build_boosting, build_forest


@dataclass(frozen=True)
class Member:
    """A model type of the ensemble: its hyperparameters and its builder."""

    name: str
    params: type[BaseModel]
    build: Callable[[Any, int], RecordModel]  # (its params, seed) -> unfitted

    @property
    def prefix(self) -> str:
        return f"{self.name}_"


MEMBERS = (Member("rf", ForestParams, build_forest), Member("gbm", BoostingParams, build_boosting))
# The ensemble's defaults that are not its members': day ahead, on working hours, a Poisson gbm
# averages with rf better than gbm's own default (squared error on log1p, the better model
# alone month ahead), on both rolling origins (docs/benchmarks.md#tuning-and-the-ensemble).
OWN_DEFAULTS: dict[str, ParamValue] = {"gbm_loss": "poisson"}


def member_params(params: BaseModel) -> dict[str, BaseModel]:
    """Each member's own hyperparameters, out of the ensemble's prefixed ones."""
    values = params.model_dump()
    return {
        member.name: member.params(
            **{
                name.removeprefix(member.prefix): value
                for name, value in values.items()
                if name.startswith(member.prefix)
            }
        )
        for member in MEMBERS
    }


class _EnsembleParamsBase(BaseModel):
    model_config = PARAMS_CONFIG

    @model_validator(mode="after")
    def _members_accept(self) -> _EnsembleParamsBase:
        # The copied fields check each value's type and range; a member's own validators
        # (rf's n_jobs is never 0) run here, on the member's hyperparameters.
        try:
            member_params(self)
        except ValidationError as exc:
            member = next(m for m in MEMBERS if exc.title == m.params.__name__)
            problems = "; ".join(
                f"{member.prefix}{'.'.join(str(p) for p in err['loc'])}: "
                f"{err['msg'].removeprefix('Value error, ')} (got {err['input']!r})"
                for err in exc.errors()
            )
            raise ValueError(problems) from None
        return self


def ensemble_params() -> type[BaseModel]:
    """The ensemble's hyperparameters: every member's, prefixed, with the member's ranges and
    defaults (but :data:`OWN_DEFAULTS`)."""
    fields: dict[str, Any] = {}
    for member in MEMBERS:
        for name, field in member.params.model_fields.items():
            own = copy(field)
            if f"{member.prefix}{name}" in OWN_DEFAULTS:
                own.default = OWN_DEFAULTS[f"{member.prefix}{name}"]
            fields[f"{member.prefix}{name}"] = (field.annotation, own)
    return create_model(
        "EnsembleParams",
        __base__=_EnsembleParamsBase,
        __doc__="The members' hyperparameters, each prefixed with its member's name.",
        **fields,
    )


EnsembleParams = ensemble_params()


def ensemble_fast_params(
    fast: Mapping[str, Mapping[str, ParamValue]],
) -> dict[str, ParamValue]:
    """The ensemble's fast settings (test mode): each member's own, prefixed."""
    return {
        f"{member.prefix}{name}": value
        for member in MEMBERS
        for name, value in fast.get(member.name, {}).items()
    }


def combine(predictions: list[np.ndarray]) -> np.ndarray:
    """The members' counts -> the ensemble's: their mean on log1p(count), as counts >= 0."""
    logs = [np.log1p(np.clip(np.asarray(p, dtype=np.float64), 0.0, None)) for p in predictions]
    return np.asarray(expm1_clipped(np.mean(logs, axis=0)))


class EnsembleRegressor(RegressorMixin, BaseEstimator):
    """Fits each member on the same records and predicts the :func:`combine` of their answers.

    ``members`` are (name, unfitted model) pairs; the fitted ones are ``members_``, in order.
    """

    def __init__(self, members: list[tuple[str, Any]]) -> None:
        self.members = members

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> EnsembleRegressor:
        self.members_ = [(name, clone(model).fit(X, y)) for name, model in self.members]
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "members_")
        return combine([model.predict(X) for _, model in self.members_])


def build_ensemble(params: BaseModel, seed: int) -> RecordModel:
    """An unfitted ensemble of ``rf`` and ``gbm`` with their hyperparameters out of ``params``."""
    own = member_params(params)
    members = [(m.name, m.build(own[m.name], seed)) for m in MEMBERS]
    return EnsembleRegressor(members)
