"""Who is champion: a new version against the current champion, decided with its reason.

A new version is crowned when there is no champion, when the champion is a test-mode model and
the new one is not, or when it beats the champion fairly: no model is judged on rows it was
fitted on. A test-mode run never replaces a champion trained on full data.

:func:`decide_champion` holds the whole policy and does no I/O: what it knows of the champion
comes in a :class:`Champion` (its run's tags, parameters and metrics), and its model through an
injected loader, called only when the policy needs to score it. ``train()`` reads the
registry before and sets the alias and logs the decision after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from bikecount.evaluate import (
    MIN_HOLDOUT_ROWS,
    SELECTION_METRIC,
    HoldoutSplit,
    is_better,
    score_model,
)
from bikecount.models.protocol import RecordModel
from bikecount.records import TIMESTAMP_COLUMN

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Challenger:
    """A new version and what judges it: its evaluation fit, holdout metrics and split."""

    version: int
    task: str
    test_mode: bool
    evaluation: RecordModel
    metrics: Mapping[str, float]
    split: HoldoutSplit
    data_fingerprint: str


@dataclass(frozen=True)
class Champion:
    """The current champion, as its MLflow run describes it."""

    version: int
    test_mode: bool
    # The last timestamp the served model was fitted on (None: not recorded).
    trained_until: pd.Timestamp | None
    # Its evaluation fit's holdout metrics, and what that holdout was.
    metrics: Mapping[str, float] = field(default_factory=dict)
    data_fingerprint: str | None = None
    holdout_cutoff: str | None = None


@dataclass(frozen=True)
class ChampionDecision:
    """Whether the new version is crowned, why, and the scores compared (``champion_<metric>
    _compared`` and ``challenger_<metric>_compared``, to log; empty when none were)."""

    crown: bool
    reason: str
    compared: dict[str, float] = field(default_factory=dict)


def decide_champion(
    challenger: Challenger,
    champion: Champion | None,
    load_version: Callable[[int], RecordModel],
) -> ChampionDecision:
    """Whether ``challenger`` becomes champion, and why (see the module docstring).

    Args:
        challenger: the new version.
        champion: the current champion (None: there is none).
        load_version: a registered version's fitted model (called with the champion's version,
            only when it must be scored).
    """
    if champion is None:
        return ChampionDecision(True, "no champion yet")
    if challenger.test_mode and not champion.test_mode:
        reason = f"test-mode run; champion v{champion.version} was trained on full data"
        return ChampionDecision(False, reason)
    if champion.test_mode and not challenger.test_mode:
        return ChampionDecision(True, "replaces a test-mode champion")
    try:
        return compare_with_champion(challenger, champion, load_version)
    except Exception as exc:  # a champion that cannot even be scored is no champion
        logger.warning("champion v%s could not be scored: %s", champion.version, exc)
        return ChampionDecision(True, f"champion v{champion.version} unusable")


def compare_with_champion(
    challenger: Challenger, champion: Champion, load_version: Callable[[int], RecordModel]
) -> ChampionDecision:
    """Whether the challenger beats the champion, judged on rows neither was fitted on.

    1. The challenger's holdout rows after the champion's ``trained_until``: the champion (as
       served) and the challenger's evaluation fit are both scored on them.
    2. Else, when the champion's own evaluation fit was scored on the very same holdout (same
       file, same cutoff), the two logged holdout metrics are compared.
    3. Else there is no fair comparison, and the champion stays.
    """
    metric, _ = SELECTION_METRIC[challenger.task]
    version, until = champion.version, champion.trained_until
    holdout, cutoff = challenger.split.holdout, challenger.split.cutoff.isoformat()
    unseen = holdout if until is None else holdout[holdout[TIMESTAMP_COLUMN] > until]
    if len(unseen) >= MIN_HOLDOUT_ROWS:
        new = score_model(challenger.evaluation, challenger.task, unseen)[metric]
        old = score_model(load_version(version), challenger.task, unseen)[metric]
        rows = (
            f"the {len(unseen):,} holdout rows after champion v{version}'s trained_until "
            f"({until.isoformat()})"
            if until is not None and len(unseen) < len(holdout)
            else f"the {len(unseen):,} holdout rows, which champion v{version} never saw"
        )
        return _verdict(metric, new, old, version, rows)
    same_holdout = (
        champion.data_fingerprint == challenger.data_fingerprint
        and champion.holdout_cutoff == cutoff
        and metric in champion.metrics
    )
    if same_holdout:
        old = float(champion.metrics[metric])
        rows = (
            f"both evaluation fits on the same {len(holdout):,} holdout rows "
            f"(after {cutoff} of the same file)"
        )
        return _verdict(metric, challenger.metrics[metric], old, version, rows)
    return ChampionDecision(
        False,
        f"no fair comparison: champion v{version} was fitted on this holdout "
        f"(trained until {until.isoformat() if until is not None else 'unknown'}) and was "
        "evaluated on another one; train on data that goes past its trained_until, or on its file",
    )


def _verdict(metric: str, new: float, old: float, champion: int, rows: str) -> ChampionDecision:
    compared = {f"champion_{metric}_compared": old, f"challenger_{metric}_compared": new}
    if is_better(metric, new, old):
        reason = f"{metric} {new:.4g} beats champion v{champion} ({old:.4g}) on {rows}"
        return ChampionDecision(True, reason, compared)
    reason = f"{metric} {new:.4g} does not beat champion v{champion} ({old:.4g}) on {rows}"
    return ChampionDecision(False, reason, compared)
