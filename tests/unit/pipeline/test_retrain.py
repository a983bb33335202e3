"""The retraining decision: drift and a weak champion, a decayed champion, or forced; and its
result's trip through XCom."""

from __future__ import annotations

import pytest

from bikecount.monitoring.decay import ChampionScore
from bikecount.monitoring.drift import DriftSummary
from bikecount.monitoring.run import MonitoringResult
from bikecount.pipeline.retrain import RetrainResult, decide


def monitoring(
    share_drifted: bool, counts_drifted: bool, r2: float | None, error_ratio: float | None = None
) -> MonitoringResult:
    drift = DriftSummary(
        drift_detected=share_drifted or counts_drifted,
        drift_share=0.6 if share_drifted else 0.2,
        drifted_columns=[],
        column_scores={},
        n_reference=100,
        n_current=10,
        share_threshold=0.5,
        target_drift={"drifted": counts_drifted, "score": 0.01},
    )
    metrics = None if r2 is None else {"r2": r2}
    holdout = None
    if error_ratio is not None:
        # The holdout missed 10% of the variance; the recent data ``error_ratio`` times as much.
        metrics, holdout = {"r2": 1 - 0.1 * error_ratio}, {"r2": 0.9}
    champion = ChampionScore(
        "gbm", version=3, rows=10, metrics_current=metrics, metrics_holdout=holdout
    )
    return MonitoringResult(drift, champion, "run", {}, 0.0, "bikecount-monitoring")


@pytest.mark.parametrize(
    ("share", "counts", "r2", "force", "retrain", "starts"),
    [
        (False, False, 0.1, False, False, "no drift: drift share 0.20 (threshold 0.50), counts"),
        (True, False, 0.1, False, True, "drift detected and R² too low"),
        (False, True, 0.1, False, True, "drift detected and R² too low"),  # counts alone
        (True, True, 0.9, False, False, "drift detected but champion holds"),
        (True, False, None, False, True, "drift detected: "),  # no champion to defend
        (False, False, 0.9, True, True, "forced; "),
    ],
)
def test_the_decision_needs_drift_and_a_weak_champion_unless_forced(
    share: bool, counts: bool, r2: float | None, force: bool, retrain: bool, starts: str
) -> None:
    decision = decide(monitoring(share, counts, r2), threshold=0.6, force=force)
    assert decision.retrain is retrain
    assert decision.reason.startswith(starts)


@pytest.mark.parametrize(
    ("share", "counts", "ratio", "retrain", "starts"),
    [
        (False, False, 5.0, True, "champion decayed: champion R² 0.500"),  # decay, no drift
        (True, True, 2.5, True, "champion decayed: "),
        (False, False, 1.5, False, "no drift: "),  # worse, but not clearly
        (True, True, 1.5, False, "drift detected but champion holds"),
    ],
)
def test_a_decayed_champion_is_retrained_whatever_the_drift(
    share: bool, counts: bool, ratio: float, retrain: bool, starts: str
) -> None:
    decision = decide(monitoring(share, counts, None, ratio), 0.6, False, decay_ratio=2.0)
    assert decision.retrain is retrain
    assert decision.reason.startswith(starts)
    assert f"recent error share 1-R² {ratio:.2f}× its holdout's (decay at 2.00×)" in decision.reason


def test_a_retrain_result_survives_the_trip_through_xcom() -> None:
    result = RetrainResult(
        "gbm", False, True, True, 0.5, 3, {"r2": 0.1}, True, False, False, "why", data_path="x"
    )
    assert RetrainResult.from_dict(result.as_dict()) == result
