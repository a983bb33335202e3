"""Tree models on the feature pipeline: ``rf`` (random forest) and ``gbm`` (gradient boosting)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline

from bikecount.features import build_feature_pipeline
from bikecount.models.param_types import PARAMS_CONFIG, Float, Int
from bikecount.models.protocol import RecordModel
from bikecount.models.targets import log_count_regressor

# Upper bounds of counts (leaves, samples per leaf) far above any data set here, far below
# the 64-bit integers that scikit-learn's C code converts them to.
MAX_COUNT = 10**9
MAX_JOBS = 64


class ForestParams(BaseModel):
    """A compact forest: subsampled trees with bounded leaves keep it fast and small on disk.

    Every bound is checked here, before a run exists: scikit-learn would only fail in ``fit``
    (``n_jobs=0``), or in C on integers beyond 64 bits. The model's size and fitting time are
    bounded by :mod:`bikecount.models.limits`.
    """

    model_config = PARAMS_CONFIG

    # 40 trees x 3,000 leaves: under 20 MB on disk for the Paris data (see benchmarks/train.py).
    n_estimators: Int = Field(default=40, ge=1, le=2000)
    max_depth: Int | None = Field(default=None, ge=1, le=1000)
    max_leaf_nodes: Int | None = Field(default=3000, ge=2, le=MAX_COUNT)
    min_samples_leaf: Int = Field(default=5, ge=1, le=MAX_COUNT)
    max_features: Float = Field(default=0.8, gt=0, le=1)
    max_samples: Float | None = Field(default=0.3, gt=0, le=1)
    # -1: every core; 0 means nothing to joblib.
    n_jobs: Int = Field(default=-1, ge=-1, le=MAX_JOBS)

    @field_validator("n_jobs")
    @classmethod
    def _some_jobs(cls, value: int) -> int:
        if value == 0:
            raise ValueError(f"n_jobs is -1 (every core) or 1 to {MAX_JOBS}, not 0")
        return value


class BoostingParams(BaseModel):
    """Histogram gradient boosting; early stopping is off because its validation is not temporal."""

    model_config = PARAMS_CONFIG

    max_iter: Int = Field(default=400, ge=1, le=10000)
    learning_rate: Float = Field(default=0.1, gt=0, le=1)
    max_leaf_nodes: Int = Field(default=63, ge=2, le=MAX_COUNT)
    min_samples_leaf: Int = Field(default=20, ge=1, le=MAX_COUNT)
    l2_regularization: Float = Field(default=0.0, ge=0, le=1e6)
    # Squared error on log1p(count), the scale forecasts are judged on: month ahead, where gbm
    # alone is judged, it beat the Poisson loss on every rolling origin (R², and RMSE log1p over
    # all hours; docs/benchmarks.md#tuning-and-the-ensemble). The ensemble keeps Poisson.
    loss: str = Field(default="squared_error", pattern="^(poisson|squared_error)$")


def with_features(estimator: object) -> Pipeline:
    """Raw records -> features -> estimator, as one pipeline."""
    return Pipeline([*build_feature_pipeline().steps, ("model", estimator)])


def build_forest(params: ForestParams, seed: int) -> RecordModel:
    forest = RandomForestRegressor(**params.model_dump(), random_state=seed)
    return log_count_regressor(with_features(forest))


def build_boosting(params: BoostingParams, seed: int) -> RecordModel:
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
