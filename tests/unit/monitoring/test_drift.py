"""Drift on generated data: same distribution stays quiet, a planted shift is found and named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bikecount.config import Settings
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.monitoring.decay import score_champion
from bikecount.monitoring.drift import DriftSummary, compute_drift, drift_features, sample_rows
from bikecount.monitoring.reports import write_report
from bikecount.records import parse_records
from bikecount.registry import Registry


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """8 counters x 3 months of canonical records (about 17,000)."""
    return parse_records(
        generate_records(SynthConfig(start="2020-09-01", months=3, n_counters=8))
    ).frame


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture(scope="module")
def same_distribution(frame: pd.DataFrame, settings: Settings) -> DriftSummary:
    """Two random halves of the same records."""
    first = frame.sample(frac=0.5, random_state=1)
    return compute_drift(first, frame.drop(first.index), settings)


def shifted(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Earlier half as reference; later half with counts x3 at 2 am as current."""
    ordered = frame.sort_values("timestamp")
    half = len(ordered) // 2
    current = ordered.iloc[half:].copy()
    current["count"] *= 3
    current["timestamp"] = current["timestamp"].dt.floor("D") + pd.Timedelta(hours=2)
    return ordered.iloc[:half], current


@pytest.fixture(scope="module")
def planted(frame: pd.DataFrame, settings: Settings) -> DriftSummary:
    return compute_drift(*shifted(frame), settings)


def test_same_distribution_does_not_drift(same_distribution: DriftSummary) -> None:
    assert not same_distribution.drift_detected
    assert same_distribution.drift_share < 0.2
    assert same_distribution.target_drift is not None
    assert not same_distribution.target_drift["drifted"]


def test_features_are_the_models_and_the_target(same_distribution: DriftSummary) -> None:
    columns = set(same_distribution.column_scores)
    assert {"counter", "hour", "weekday", "month", "is_holiday", "count"} <= columns
    for score in same_distribution.column_scores.values():
        assert score["method"] and score["threshold"] is not None


def test_planted_shift_is_detected_and_named(planted: DriftSummary) -> None:
    assert planted.drift_detected
    assert planted.drift_share >= 0.5
    assert {"hour", "count", "month"} <= set(planted.drifted_columns)
    assert "counter" not in planted.drifted_columns  # the same counters on both sides
    assert planted.target_drift is not None and planted.target_drift["drifted"]


def test_share_threshold_from_settings_changes_the_verdict(frame: pd.DataFrame) -> None:
    reference, current = shifted(frame)
    strict = compute_drift(reference, current, Settings(_env_file=None, drift_share_threshold=1.0))
    assert strict.drifted_columns and strict.drift_share < 1.0
    assert strict.share_threshold == 1.0
    # The share is not reached, but the counts drifted: that alone is drift.
    assert strict.target_drift is not None and strict.target_drift["drifted"]
    assert strict.drift_detected


def test_the_share_alone_decides_when_the_counts_do_not_drift(frame: pd.DataFrame) -> None:
    reference, current = shifted(frame)
    strict = Settings(_env_file=None, drift_share_threshold=1.0)
    without_counts = compute_drift(
        reference.drop(columns="count"), current.drop(columns="count"), strict
    )
    assert without_counts.drifted_columns and without_counts.target_drift is None
    assert not without_counts.drift_detected


def test_column_threshold_from_settings_changes_the_columns(
    frame: pd.DataFrame, same_distribution: DriftSummary
) -> None:
    first = frame.sample(frac=0.5, random_state=1)
    touchy = Settings(_env_file=None, drift_column_threshold=0.001, drift_share_threshold=0.3)
    summary = compute_drift(first, frame.drop(first.index), touchy)
    assert len(summary.drifted_columns) > len(same_distribution.drifted_columns)
    assert summary.drift_detected


def test_summary_is_json_serialisable(planted: DriftSummary) -> None:
    data = json.loads(json.dumps(planted.as_dict()))
    assert data["drift_detected"] is True
    assert data["n_reference"] + data["n_current"] > 10_000
    assert "snapshot" not in data


def test_report_html_is_written(planted: DriftSummary, tmp_path: Path) -> None:
    path = write_report(planted.snapshot, tmp_path / "reports" / "drift.html")
    html = Path(path).read_text()
    assert "<html" in html.lower() and len(html) > 10_000


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's chi-square on empty bins
def test_samples_are_bounded_and_seeded(frame: pd.DataFrame) -> None:
    """500-row samples: Evidently switches to p-value tests, where drift is a *low* score."""
    small = Settings(_env_file=None, drift_sample_rows=500)
    reference, current = shifted(frame)
    assert sample_rows(current, 500, small.seed).equals(sample_rows(current, 500, small.seed))
    first = compute_drift(reference, current, small)
    assert first.n_reference == len(reference)  # counts of the inputs, not of the sample
    hour = first.column_scores["hour"]
    assert "p_value" in hour["method"] and hour["drifted"] and hour["score"] < hour["threshold"]


def test_without_target_on_one_side_only_features_are_compared(
    frame: pd.DataFrame, settings: Settings
) -> None:
    current = frame.assign(count=float("nan"))
    summary = compute_drift(frame, current, settings)
    assert "count" not in summary.column_scores and summary.target_drift is None
    assert "count" not in drift_features(current.head())


def test_empty_side_is_a_clear_error(frame: pd.DataFrame, settings: Settings) -> None:
    with pytest.raises(ValueError, match="current data has no valid records"):
        compute_drift(frame, frame.head(0), settings)


def test_champion_is_skipped_without_counts(frame: pd.DataFrame, settings: Settings) -> None:
    score = score_champion(Registry(settings), "gbm", frame.assign(count=float("nan")))
    assert score.metrics_current is None and "no counts" in (score.reason or "")
