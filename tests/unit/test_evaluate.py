"""Holdout metrics on hand-made arrays, the temporal holdout, and the champion comparison."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from bikecount.evaluate import (
    CLASSIFICATION_METRICS,
    HIGHER_IS_BETTER,
    REGRESSION_METRICS,
    SELECTION_METRIC,
    classification_metrics,
    finite_metrics,
    is_better,
    per_counter_rmse,
    regression_metrics,
    split_holdout,
)
from bikecount.records import PARIS_TZ


def hourly_records(start: str, hours: int, *, counter: str = "a") -> pd.DataFrame:
    """Canonical records of one counter, one per hour from ``start`` (Paris time)."""
    stamps = pd.date_range(pd.Timestamp(start, tz=PARIS_TZ), periods=hours, freq="h")
    return pd.DataFrame(
        {"counter": counter, "timestamp": stamps, "lat": 48.85, "lon": 2.35, "count": 1.0}
    )


# --- metrics -------------------------------------------------------------------------------


def test_regression_metrics_on_a_hand_made_example() -> None:
    metrics = regression_metrics(np.array([0, 2, 4]), np.array([1, 2, 3]))

    assert tuple(metrics) == REGRESSION_METRICS
    assert metrics["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["r2"] == pytest.approx(1 - 2 / 8)
    log_errors = [math.log(1) - math.log(2), 0.0, math.log(5) - math.log(4)]
    assert metrics["rmse_log1p"] == pytest.approx(math.sqrt(sum(e**2 for e in log_errors) / 3))


def test_perfect_predictions_score_perfectly() -> None:
    counts = np.array([0.0, 3.0, 50.0, 7.0])

    assert regression_metrics(counts, counts) == {
        "rmse": 0.0,
        "mae": 0.0,
        "r2": 1.0,
        "rmse_log1p": 0.0,
    }


def test_negative_predictions_are_scored_as_zero() -> None:
    metrics = regression_metrics(np.array([0.0, 4.0]), np.array([-3.0, 4.0]))

    assert metrics["rmse"] == 0.0 and metrics["mae"] == 0.0
    assert not math.isnan(metrics["rmse_log1p"])


def test_r2_of_a_single_record_is_nan() -> None:
    metrics = regression_metrics(np.array([3.0]), np.array([5.0]))

    assert math.isnan(metrics["r2"])
    assert metrics["rmse"] == pytest.approx(2.0)


def test_classification_metrics_on_a_hand_made_example() -> None:
    truth = np.array([0, 1, 1, 0])
    predicted = np.array([0, 1, 0, 0])
    proba = np.array([0.1, 0.9, 0.4, 0.2])

    metrics = classification_metrics(truth, predicted, proba)

    assert tuple(metrics) == CLASSIFICATION_METRICS
    assert metrics == pytest.approx(
        {"accuracy": 0.75, "precision": 1.0, "recall": 0.5, "f1_score": 2 / 3, "roc_auc": 1.0}
    )


def test_no_predicted_positive_gives_zero_precision_not_an_error() -> None:
    metrics = classification_metrics(np.array([0, 1]), np.array([0, 0]), np.array([0.2, 0.3]))

    assert (metrics["precision"], metrics["recall"], metrics["f1_score"]) == (0.0, 0.0, 0.0)
    assert metrics["roc_auc"] == 1.0


def test_roc_auc_is_nan_when_the_holdout_has_one_class() -> None:
    metrics = classification_metrics(np.array([1, 1]), np.array([1, 0]), np.array([0.9, 0.4]))

    assert math.isnan(metrics["roc_auc"])
    assert metrics["accuracy"] == 0.5


def test_every_metric_has_a_direction() -> None:
    assert set(REGRESSION_METRICS) | set(CLASSIFICATION_METRICS) == set(HIGHER_IS_BETTER)
    assert SELECTION_METRIC == {"regression": ("rmse", False), "classification": ("f1_score", True)}
    for metric, higher in SELECTION_METRIC.values():
        assert HIGHER_IS_BETTER[metric] is higher


def test_per_counter_rmse_worst_first() -> None:
    records = pd.DataFrame(
        {"counter": ["a", "b", "a", "b"], "count": [1.0, 10.0, 3.0, 10.0]},
        index=[10, 3, 7, 5],  # not a range: predictions are matched by position
    )

    rmse = per_counter_rmse(records, np.array([1.0, 13.0, 1.0, 7.0]))

    assert rmse == {"b": 3.0, "a": 1.414}
    assert list(rmse) == ["b", "a"]


# --- holdout -------------------------------------------------------------------------------


def test_holdout_keeps_the_last_days_out() -> None:
    frame = hourly_records("2021-06-01", 30 * 24).sample(frac=1.0, random_state=0)

    split = split_holdout(frame, days=7)

    end = frame["timestamp"].max()
    assert split.rule == "last 7 days"
    assert split.cutoff == end - pd.Timedelta(days=7)
    assert len(split.holdout) == 7 * 24
    assert len(split.train) + len(split.holdout) == len(frame)
    assert split.train["timestamp"].max() == split.cutoff
    assert split.holdout["timestamp"].min() > split.cutoff
    assert split.train["timestamp"].is_monotonic_increasing
    assert split.holdout["timestamp"].is_monotonic_increasing


def test_all_counters_of_an_hour_fall_on_the_same_side() -> None:
    frame = pd.concat(
        [hourly_records("2021-06-01", 30 * 24, counter=c) for c in ("a", "b", "c")]
    ).reset_index(drop=True)

    split = split_holdout(frame, days=5)

    assert set(split.train["timestamp"]).isdisjoint(split.holdout["timestamp"])
    assert split.holdout.groupby("counter").size().tolist() == [5 * 24] * 3


def test_a_year_holds_out_its_last_days_though_they_are_a_small_share() -> None:
    # 14 days are 3.8% of a year: still the holdout (the 20% fallback is for short data only).
    frame = hourly_records("2020-09-01", 365 * 24)

    split = split_holdout(frame, days=14)

    assert split.rule == "last 14 days"
    assert len(split.holdout) == 14 * 24
    assert split.train["timestamp"].max() == frame["timestamp"].max() - pd.Timedelta(days=14)


def test_data_shorter_than_four_holdouts_falls_back_to_the_last_fifth() -> None:
    # 40 days: holding out 14 would leave less than three times as much to fit on.
    frame = hourly_records("2021-06-01", 40 * 24)

    split = split_holdout(frame, days=14)

    assert split.rule == "last 20% of the period"
    assert len(split.holdout) == 8 * 24


def test_short_data_falls_back_to_the_last_fifth_of_the_period() -> None:
    # 10 days of data cannot hold out 14: the last 20% of the span is held out instead.
    frame = hourly_records("2021-06-01", 10 * 24 + 1)

    split = split_holdout(frame, days=14)

    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    assert split.rule == "last 20% of the period"
    assert split.cutoff == start + (end - start) * 0.8
    assert len(split.holdout) == 2 * 24
    assert split.holdout["timestamp"].min() > split.cutoff >= split.train["timestamp"].max()


def test_sparse_recent_data_falls_back_to_the_last_fifth_of_the_period() -> None:
    # 60 dense days, then one record a day for 14 days: the last 14 days hold under 1% of rows.
    dense = hourly_records("2021-04-01", 60 * 24)
    sparse = pd.concat(hourly_records(f"2021-06-{day:02d} 12:00", 1) for day in range(1, 15))
    frame = pd.concat([dense, sparse], ignore_index=True)

    split = split_holdout(frame, days=14)

    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    assert split.rule == "last 20% of the period"
    assert split.cutoff == start + (end - start) * 0.8
    assert len(split.holdout) == (frame["timestamp"] > split.cutoff).sum() > 14
    assert len(split.train) + len(split.holdout) == len(frame)


def test_a_holdout_from_a_day_holds_out_exactly_that_day_on() -> None:
    frame = hourly_records("2021-06-01", 30 * 24).sample(frac=1.0, random_state=0)

    split = split_holdout(frame, days=7, start=date(2021, 6, 25))

    assert split.rule == "from 2021-06-25"
    assert split.holdout["timestamp"].min() == pd.Timestamp("2021-06-25", tz="Europe/Paris")
    assert split.train["timestamp"].max() == pd.Timestamp("2021-06-24 23:00", tz="Europe/Paris")
    assert len(split.holdout) == 6 * 24 and len(split.train) == 24 * 24


@pytest.mark.parametrize(
    ("day", "side"), [(date(2021, 5, 1), "before"), (date(2021, 8, 1), "from")]
)
def test_a_holdout_day_outside_the_data_is_refused(day: date, side: str) -> None:
    frame = hourly_records("2021-06-01", 10 * 24)
    with pytest.raises(ValueError, match=f"holdout from {day}: the data has no record {side}"):
        split_holdout(frame, days=7, start=day)


def test_a_single_hour_cannot_be_split() -> None:
    frame = pd.concat([hourly_records("2021-06-01", 1, counter=c) for c in "ab"])

    with pytest.raises(ValueError, match="single hour"):
        split_holdout(frame, days=14)


# --- champion comparison -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "candidate", "incumbent", "better"),
    [
        ("rmse", 9.0, 10.0, True),
        ("rmse", 11.0, 10.0, False),
        ("mae", 1.0, 2.0, True),
        ("rmse_log1p", 0.5, 0.4, False),
        ("r2", 0.9, 0.8, True),
        ("r2", 0.7, 0.8, False),
        ("f1_score", 0.8, 0.7, True),
        ("f1_score", 0.6, 0.7, False),
        ("roc_auc", 0.95, 0.9, True),
        ("accuracy", 0.5, 0.5, False),
    ],
)
def test_direction_depends_on_the_metric(
    metric: str, candidate: float, incumbent: float, better: bool
) -> None:
    assert is_better(metric, candidate, incumbent) is better


@pytest.mark.parametrize("metric", ["rmse", "f1_score"])
@pytest.mark.parametrize(
    "candidate",
    [10.0, 10.0 + 1e-12, 10.0 - 1e-12],
    ids=["equal", "a-hair-above", "a-hair-below"],
)
def test_a_tie_never_wins(metric: str, candidate: float) -> None:
    assert is_better(metric, candidate, 10.0) is False


def test_tolerance_is_relative_to_the_incumbent() -> None:
    assert is_better("rmse", 1e6 - 1e-4, 1e6) is False  # within 1e-9 of a million
    assert is_better("rmse", 1e6 - 1.0, 1e6) is True


@pytest.mark.parametrize("metric", ["rmse", "f1_score"])
def test_nan_never_wins_and_always_loses(metric: str) -> None:
    nan = float("nan")

    assert is_better(metric, nan, 10.0) is False
    assert is_better(metric, nan, nan) is False
    assert is_better(metric, 10.0, nan) is True


def test_finite_metrics_are_json_ready() -> None:
    """The one NaN -> None rule of every JSON answer (API, CLI, drift, backtest)."""
    metrics = {"r2": float("nan"), "rmse": 3.14159, "mae": float("inf")}
    assert finite_metrics(metrics) == {"r2": None, "rmse": 3.14159, "mae": None}
    assert finite_metrics(metrics, digits=2) == {"r2": None, "rmse": 3.14, "mae": None}
