"""Tree models on the feature pipeline: ``rf`` (random forest) and ``gbm`` (gradient boosting)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline

from bikecount.features import build_feature_pipeline
from bikecount.models.targets import log_count_regressor


class ForestParams(BaseModel):
    """A compact forest: subsampled trees with bounded leaves keep it fast and small on disk."""

    model_config = ConfigDict(extra="forbid")

    # 40 trees x 3,000 leaves: under 20 MB on disk for the Paris data (see benchmarks/train.py).
    n_estimators: int = Field(default=40, ge=1, le=2000)
    max_depth: int | None = Field(default=None, ge=1)
    max_leaf_nodes: int | None = Field(default=3000, ge=2)
    min_samples_leaf: int = Field(default=5, ge=1)
    max_features: float = Field(default=0.8, gt=0, le=1)
    max_samples: float | None = Field(default=0.3, gt=0, le=1)
    n_jobs: int = -1


class BoostingParams(BaseModel):
    """Histogram gradient boosting; early stopping is off because its validation is not temporal."""

    model_config = ConfigDict(extra="forbid")

    max_iter: int = Field(default=400, ge=1, le=10000)
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    max_leaf_nodes: int = Field(default=63, ge=2)
    min_samples_leaf: int = Field(default=20, ge=1)
    l2_regularization: float = Field(default=0.0, ge=0)
    loss: str = Field(default="poisson", pattern="^(poisson|squared_error)$")


def with_features(estimator: object) -> Pipeline:
    """Raw records -> features -> estimator, as one pipeline."""
    return Pipeline([*build_feature_pipeline().steps, ("model", estimator)])


def build_forest(params: ForestParams, seed: int) -> object:
    forest = RandomForestRegressor(**params.model_dump(), random_state=seed)
    return log_count_regressor(with_features(forest))


def build_boosting(params: BoostingParams, seed: int) -> object:
    settings = params.model_dump()
    loss = settings.pop("loss")
    gbm = HistGradientBoostingRegressor(
        **settings,
        loss=loss,
        early_stopping=False,
        categorical_features=["counter_code", "weekday"],
        random_state=seed,
    )
    if loss == "poisson":
        # The Poisson loss models counts directly (log link): predictions are positive means.
        return with_features(gbm)
    return log_count_regressor(with_features(gbm))
