"""The champion policy, branch by branch, each with its reason: no registry, no MLflow.

The models are stand-ins whose errors are known: ``Off(by)`` predicts every count ``by`` too
high, so its RMSE is ``by``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bikecount.champion import Challenger, Champion, ChampionDecision, decide_champion
from bikecount.evaluate import MIN_HOLDOUT_ROWS, HoldoutSplit
from bikecount.records import PARIS_TZ

# 200 hourly holdout rows from 18 May 2021, local midnight; the training rows end before them.
HOLDOUT_START = pd.Timestamp("2021-05-18 00:00", tz=PARIS_TZ)
HOLDOUT_HOURS = 200
FINGERPRINT = "0123456789abcdef"


class Off:
    """A model whose every prediction is ``by`` above the true count."""

    def __init__(self, by: float) -> None:
        self.by = by

    def predict(self, records: pd.DataFrame) -> np.ndarray:
        return records["count"].to_numpy(float) + self.by


class Later:
    """A model ``before`` off up to ``until``, ``after`` off past it."""

    def __init__(self, until: pd.Timestamp, before: float, after: float) -> None:
        self.until, self.before, self.after = until, before, after

    def predict(self, records: pd.DataFrame) -> np.ndarray:
        late = (records["timestamp"] > self.until).to_numpy()
        return records["count"].to_numpy(float) + np.where(late, self.after, self.before)


class Unloadable:
    """A loader that cannot give the champion back."""

    def __call__(self, version: int) -> Any:
        raise OSError(f"v{version}: artifact missing")


class Loader:
    """The registry's loader of versions, recording what it was asked."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.loaded: list[int] = []

    def __call__(self, version: int) -> Any:
        self.loaded.append(version)
        return self.model


def hourly(start: pd.Timestamp, hours: int) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=hours, freq="h")
    counts = np.arange(hours) % 24 * 3.0
    return pd.DataFrame(
        {"counter": "a", "timestamp": stamps, "lat": 48.85, "lon": 2.35, "count": counts}
    )


def challenger(error: float = 2.0, **changes: Any) -> Challenger:
    """A full-data challenger whose evaluation fit's RMSE is ``error`` on its holdout."""
    train = hourly(HOLDOUT_START - pd.Timedelta(hours=600), 600)
    holdout = hourly(HOLDOUT_START, HOLDOUT_HOURS)
    cutoff = train["timestamp"].max()
    new = Challenger(
        version=4,
        task="regression",
        test_mode=False,
        evaluation=Off(error),
        metrics={"rmse": error},
        split=HoldoutSplit(train, holdout, cutoff, "last 14 days"),
        data_fingerprint=FINGERPRINT,
    )
    return replace(new, **changes)


def champion(**changes: Any) -> Champion:
    """A full-data champion trained until just before the challenger's holdout."""
    current = Champion(
        version=3,
        test_mode=False,
        trained_until=HOLDOUT_START - pd.Timedelta(hours=1),
        metrics={"rmse": 5.0},
        data_fingerprint="fedcba9876543210",
        holdout_cutoff="2021-05-01T00:00:00+02:00",
    )
    return replace(current, **changes)


def same_holdout(new: Challenger, rmse: float) -> Champion:
    """A champion that saw the challenger's holdout, and was evaluated on the very same one."""
    return champion(
        trained_until=new.split.holdout["timestamp"].max(),
        metrics={"rmse": rmse},
        data_fingerprint=new.data_fingerprint,
        holdout_cutoff=new.split.cutoff.isoformat(),
    )


def same_holdout_f1(new: Challenger, f1: float) -> Champion:
    return replace(same_holdout(new, 0.0), metrics={"f1_score": f1})


# --- no comparison needed ------------------------------------------------------------------


def test_the_first_version_is_crowned() -> None:
    loader = Loader(Off(0))

    decision = decide_champion(challenger(), None, loader)

    assert decision == ChampionDecision(True, "no champion yet")
    assert loader.loaded == []


def test_a_test_mode_run_never_replaces_a_champion_trained_on_full_data() -> None:
    loader = Loader(Off(100))  # however bad the champion

    decision = decide_champion(challenger(0.0, test_mode=True), champion(), loader)

    assert decision == ChampionDecision(
        False, "test-mode run; champion v3 was trained on full data"
    )
    assert loader.loaded == []


def test_a_full_data_run_replaces_a_test_mode_champion() -> None:
    loader = Loader(Off(0))  # however good the champion

    decision = decide_champion(challenger(50.0), champion(test_mode=True), loader)

    assert decision == ChampionDecision(True, "replaces a test-mode champion")
    assert loader.loaded == []


def test_two_test_mode_runs_are_compared() -> None:
    decision = decide_champion(
        challenger(1.0, test_mode=True), champion(test_mode=True), Loader(Off(3))
    )

    assert decision.crown and "beats champion v3" in decision.reason


def test_a_champion_that_cannot_be_loaded_is_replaced() -> None:
    decision = decide_champion(challenger(), champion(), Unloadable())

    assert decision == ChampionDecision(True, "champion v3 unusable")


# --- judged on rows the champion never saw -------------------------------------------------


@pytest.mark.parametrize(
    ("champion_error", "crown", "verdict"),
    [
        (3.0, True, "rmse 2 beats champion v3 (3)"),
        (1.0, False, "rmse 2 does not beat champion v3 (1)"),
    ],
)
def test_a_champion_trained_before_the_holdout_is_scored_on_all_of_it(
    champion_error: float, crown: bool, verdict: str
) -> None:
    loader = Loader(Off(champion_error))

    decision = decide_champion(challenger(2.0), champion(), loader)

    rows = f"on the {HOLDOUT_HOURS} holdout rows, which champion v3 never saw"
    assert decision == ChampionDecision(
        crown,
        f"{verdict} {rows}",
        {"champion_rmse_compared": champion_error, "challenger_rmse_compared": 2.0},
    )
    assert loader.loaded == [3]


def test_a_champion_without_trained_until_is_scored_on_the_whole_holdout() -> None:
    decision = decide_champion(challenger(2.0), champion(trained_until=None), Loader(Off(3.0)))

    assert decision.crown
    assert decision.reason.endswith(
        f"the {HOLDOUT_HOURS} holdout rows, which champion v3 never saw"
    )


def test_only_the_holdout_rows_after_the_champions_trained_until_count() -> None:
    until = HOLDOUT_START + pd.Timedelta(hours=59)  # it saw the first 60 holdout hours
    # The challenger is worse on the first 60 hours, better on the 140 after them.
    new = challenger(evaluation=Later(until, before=100.0, after=1.0))

    decision = decide_champion(new, champion(trained_until=until), Loader(Off(2.0)))

    assert decision.crown, decision.reason
    assert decision.reason == (
        "rmse 1 beats champion v3 (2) on the 140 holdout rows after champion v3's "
        f"trained_until ({until.isoformat()})"
    )


# --- judged on the same holdout, or not at all ---------------------------------------------


@pytest.mark.parametrize(
    ("logged", "crown", "verdict"),
    [
        (3.0, True, "rmse 2 beats champion v3 (3)"),
        (1.0, False, "rmse 2 does not beat champion v3 (1)"),
    ],
)
def test_a_champion_evaluated_on_the_same_holdout_is_judged_on_its_logged_metric(
    logged: float, crown: bool, verdict: str
) -> None:
    new = challenger(2.0)
    loader = Loader(Off(0.0))  # the served champion saw the holdout: never scored on it

    decision = decide_champion(new, same_holdout(new, logged), loader)

    cutoff = new.split.cutoff.isoformat()
    assert decision == ChampionDecision(
        crown,
        f"{verdict} on both evaluation fits on the same {HOLDOUT_HOURS} holdout rows "
        f"(after {cutoff} of the same file)",
        {"champion_rmse_compared": logged, "challenger_rmse_compared": 2.0},
    )
    assert loader.loaded == []


def test_too_few_unseen_rows_to_score_on_fall_back_to_the_logged_metric() -> None:
    new = challenger(2.0)
    # It saw all but the last 50 holdout hours: fewer than MIN_HOLDOUT_ROWS.
    until = new.split.holdout["timestamp"].iloc[-MIN_HOLDOUT_ROWS // 2 - 1]
    loader = Loader(Off(0.0))

    decision = decide_champion(new, replace(same_holdout(new, 3.0), trained_until=until), loader)

    assert decision.crown and "both evaluation fits on the same" in decision.reason
    assert loader.loaded == []


def test_a_tie_keeps_the_champion() -> None:
    new = challenger(2.0)

    decision = decide_champion(new, same_holdout(new, 2.0), Loader(Off(0.0)))

    assert not decision.crown and "does not beat" in decision.reason


@pytest.mark.parametrize(
    "difference",
    [
        {"data_fingerprint": "another file"},
        {"holdout_cutoff": "2021-05-10T00:00:00+02:00"},
        {"metrics": {"mae": 1.0}},
    ],
)
def test_a_champion_that_saw_the_holdout_and_was_evaluated_on_another_stays(
    difference: dict[str, Any],
) -> None:
    new = challenger(0.5)
    current = replace(same_holdout(new, 9.0), **difference)
    until = current.trained_until
    assert until is not None

    decision = decide_champion(new, current, Loader(Off(0.0)))

    assert decision == ChampionDecision(
        False,
        f"no fair comparison: champion v3 was fitted on this holdout (trained until "
        f"{until.isoformat()}) and was evaluated on another one; train on data that goes past "
        "its trained_until, or on its file",
    )


def test_a_classifier_is_judged_on_f1_score_where_higher_is_better() -> None:
    new = challenger(task="classification", metrics={"f1_score": 0.8})

    wins = decide_champion(new, same_holdout_f1(new, 0.7), Loader(Off(0.0)))
    loses = decide_champion(new, same_holdout_f1(new, 0.9), Loader(Off(0.0)))

    assert wins.crown and wins.reason.startswith("f1_score 0.8 beats champion v3 (0.7)")
    assert not loses.crown and loses.reason.startswith("f1_score 0.8 does not beat")
