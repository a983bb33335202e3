"""fit_and_evaluate on a small generated frame: an honest holdout score, a deployable model
refitted on every row, what it knows, and no I/O on the way."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from bikecount.config import Settings
from bikecount.evaluate import REGRESSION_METRICS, score_model, split_holdout
from bikecount.fitting import FitResult, fit_and_evaluate, fit_for_deployment, fit_records
from bikecount.models import parse_params
from bikecount.stopping import StopToken, TrainingCancelledError

SMALL_FOREST = {"n_estimators": 5, "max_leaf_nodes": 50}
NN_FAST = {"embedding_dim": 4, "hidden_sizes": [16], "season_hidden_sizes": [8], "max_epochs": 4}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture(scope="module")
def forest(small_frame: pd.DataFrame, settings: Settings) -> tuple[FitResult, list[str]]:
    """The forest fitted on the small frame, and what it said on the way (stages, scores)."""
    events: list[str] = []
    fitted = fit_and_evaluate(
        small_frame,
        "rf",
        parse_params("rf", SMALL_FOREST),
        settings,
        on_stage=events.append,
        on_scored=lambda metrics: events.append(f"scored rmse={metrics['rmse']:.6g}"),
    )
    return fitted, events


def test_the_holdout_is_scored_on_a_fit_that_never_saw_it(
    forest: tuple[FitResult, list[str]], small_frame: pd.DataFrame, settings: Settings
) -> None:
    fitted, _ = forest

    expected = split_holdout(small_frame, settings.holdout_days)
    assert fitted.split.cutoff == expected.cutoff and fitted.split.rule == "last 14 days"
    assert len(fitted.split.train) + len(fitted.split.holdout) == len(small_frame)
    assert tuple(fitted.metrics) == REGRESSION_METRICS
    scores = score_model(fitted.evaluation, "regression", fitted.split.holdout)
    assert fitted.metrics == pytest.approx(scores)
    assert 0 < fitted.metrics["rmse"] and fitted.metrics["r2"] > 0


def test_the_deployed_model_is_refitted_on_every_row(
    forest: tuple[FitResult, list[str]], small_frame: pd.DataFrame, settings: Settings
) -> None:
    fitted, _ = forest

    assert fitted.model is not fitted.evaluation
    assert fitted.rows_fit == len(small_frame)
    assert fitted.trained_until == small_frame["timestamp"].max().isoformat()
    assert fitted.refit_changes == {}  # a forest refits with the evaluated hyperparameters
    # The same model as a fit on every row: seeded, so the predictions are the same.
    on_every_row = fit_records("rf", parse_params("rf", SMALL_FOREST), small_frame, settings)
    holdout = fitted.split.holdout
    np.testing.assert_allclose(fitted.model.predict(holdout), on_every_row.predict(holdout))
    # It knows the holdout days: it predicts them better than the evaluation fit.
    refit_rmse = score_model(fitted.model, "regression", holdout)["rmse"]
    assert refit_rmse < fitted.metrics["rmse"]


def test_stages_are_told_in_order_and_the_scores_before_the_refit(
    forest: tuple[FitResult, list[str]], small_frame: pd.DataFrame
) -> None:
    fitted, events = forest
    train_rows, holdout_rows = len(fitted.split.train), len(fitted.split.holdout)

    assert events == [
        f"fitting random forest regressor on {train_rows:,} records",
        f"scoring on the holdout ({holdout_rows:,} records, last 14 days)",
        f"scored rmse={fitted.metrics['rmse']:.6g}",
        f"refitting on all {len(small_frame):,} records (holdout included)",
    ]


def test_without_refit_the_evaluation_fit_is_deployed(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    split = split_holdout(small_frame, settings.holdout_days, start=date(2021, 4, 20))
    stages: list[str] = []

    fitted = fit_and_evaluate(
        small_frame,
        "rf",
        parse_params("rf", SMALL_FOREST),
        settings,
        split=split,
        refit=False,
        on_stage=stages.append,
    )

    assert fitted.split is split and fitted.split.rule == "from 2021-04-20"
    assert fitted.model is fitted.evaluation
    assert fitted.rows_fit == len(split.train)
    assert fitted.trained_until == split.train["timestamp"].max().isoformat()
    assert pd.Timestamp(fitted.trained_until) < pd.Timestamp("2021-04-20", tz="Europe/Paris")
    assert not any(stage.startswith("refitting") for stage in stages)


def test_a_stopped_fit_raises_before_anything_is_scored(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    stop = StopToken()
    stop.cancel("cancelled by the test")
    scored: list[dict[str, float]] = []

    with pytest.raises(TrainingCancelledError, match=r"cancelled by the test \(fitting\)"):
        fit_and_evaluate(
            small_frame, "rf", parse_params("rf", SMALL_FOREST), settings, stop,
            on_scored=scored.append,
        )  # fmt: skip

    assert scored == []


def test_a_forest_for_deployment_is_fitted_once_on_every_row(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    params = parse_params("rf", SMALL_FOREST)

    model = fit_for_deployment("rf", params, small_frame, settings)

    expected = fit_records("rf", params, small_frame, settings)
    rows = small_frame.tail(48)
    np.testing.assert_allclose(model.predict(rows), expected.predict(rows))


def test_fitting_and_the_champion_policy_import_neither_mlflow_nor_the_registry() -> None:
    code = (
        "import sys, bikecount.fitting, bikecount.champion; "
        "print(sorted(m for m in ('mlflow', 'bikecount.registry', 'bikecount.data.io') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_nn_is_refitted_for_the_epochs_its_early_stopping_chose(
    small_frame: pd.DataFrame, settings: Settings
) -> None:
    params = parse_params("nn", NN_FAST)

    fitted = fit_and_evaluate(small_frame, "nn", params, settings)

    chosen = fitted.evaluation.regressor_[-1].best_epoch_
    assert fitted.refit_changes == {"refit_epochs": chosen}
    network = fitted.model.regressor_[-1]
    assert network.n_epochs_ == network.best_epoch_ == chosen
