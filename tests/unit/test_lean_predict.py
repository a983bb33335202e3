"""The lean path through gradient boosting answers what the estimator's own predict answers.

``lean_boosting`` walks a HistGradientBoostingRegressor's trees itself for a few rows; its
answers must be the estimator's to 1e-6 (relative) on real records, for both losses, with
categories unseen in fit and missing values, and the estimator must answer for itself where
the lean path does not know the way (more rows, no categorical features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from bikecount import lean_boosting, lean_predict
from bikecount.data.io import read_records
from bikecount.models import build_model, parse_params
from bikecount.records import require_valid

REAL_EXPORT = Path(__file__).parents[1] / "fixtures" / "opendata" / "exports-csv-2021-06-01.csv"
RELATIVE = 1e-6


@pytest.fixture(scope="module")
def real_frame() -> pd.DataFrame:
    return require_valid(read_records(REAL_EXPORT))


@pytest.fixture(scope="module", params=["poisson", "squared_error"])
def gbm(request: pytest.FixtureRequest, small_frame: pd.DataFrame) -> Any:
    params = parse_params("gbm", {"loss": request.param, "max_iter": 80})
    model = build_model("gbm", params, seed=3)
    return model.fit(small_frame, small_frame["count"].to_numpy())


def boosting_of(model: Any) -> tuple[Any, HistGradientBoostingRegressor]:
    pipeline = getattr(model, "regressor_", model)
    return pipeline, pipeline.steps[-1][1]


def test_lean_predictions_are_the_models_on_real_records(
    gbm: Any, real_frame: pd.DataFrame
) -> None:
    for start in range(0, len(real_frame), 5):
        one = real_frame.iloc[start : start + 1]
        np.testing.assert_allclose(
            lean_predict.predict_values(gbm, one), gbm.predict(one), rtol=RELATIVE, atol=0
        )
    np.testing.assert_allclose(
        lean_predict.predict_values(gbm, real_frame),
        gbm.predict(real_frame),
        rtol=RELATIVE,
        atol=0,
    )


def test_the_trees_are_walked_for_a_few_rows_only(gbm: Any, real_frame: pd.DataFrame) -> None:
    pipeline, estimator = boosting_of(gbm)
    features = lean_predict._transform(pipeline, real_frame)
    assert lean_boosting.predict_few(estimator, features.iloc[:24]) is not None
    many = pd.concat([features] * (lean_boosting.MAX_ROWS // len(features) + 1))
    assert lean_boosting.predict_few(estimator, many) is None


def test_unseen_categories_and_missing_values_go_the_estimators_way(
    gbm: Any, small_frame: pd.DataFrame
) -> None:
    pipeline, estimator = boosting_of(gbm)
    features = lean_predict._transform(pipeline, small_frame.iloc[:40]).copy()
    features.loc[features.index[::3], "counter_code"] = 999  # never seen in fit
    features.loc[features.index[1::4], "weekday"] = -1
    features["lat"] = features["lat"].astype(float)
    features.loc[features.index[::5], "lat"] = np.nan
    lean = lean_boosting.predict_few(estimator, features)
    assert lean is not None
    np.testing.assert_allclose(lean, estimator.predict(features), rtol=RELATIVE, atol=0)


def test_a_boosting_without_categories_predicts_itself(small_frame: pd.DataFrame) -> None:
    features = pd.DataFrame(
        {"hour": small_frame["timestamp"].dt.hour, "day": small_frame["timestamp"].dt.day}
    )
    estimator = HistGradientBoostingRegressor(max_iter=20).fit(features, small_frame["count"])
    assert lean_boosting.predict_few(estimator, features.iloc[:3]) is None
