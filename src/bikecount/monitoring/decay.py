"""Model decay: the champion scored on the labelled current records, next to its holdout metrics.

:func:`decay_ratio` and :func:`has_decayed` are pure; :func:`score_champion` reads the champion
from the registry, and skips the scoring with a reason when it cannot (drift is still worth
reporting without it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from bikecount.evaluate import finite_metrics, score_model
from bikecount.models import get_spec
from bikecount.records import COUNT_COLUMN
from bikecount.registry import ModelNotFoundError, Registry, RegistryUnavailableError

logger = logging.getLogger(__name__)


@dataclass
class ChampionScore:
    """The champion on the labelled current records, next to its holdout metrics.

    ``metrics_current`` is None when it could not be scored; ``reason`` says why.
    """

    model_type: str
    version: int | None = None
    rows: int = 0
    metrics_current: dict[str, float | None] | None = None
    metrics_holdout: dict[str, float | None] | None = None
    reason: str | None = None


def decay_ratio(champion: ChampionScore) -> float | None:
    """How many times the champion's recent error share is its holdout's (None: unknown).

    The error share is 1 - R², the part of the counts' variance the model misses: scale-free,
    so a quiet August (low counts, low RMSE) does not hide a champion that no longer follows
    the traffic. Above 1, the champion does worse now than when it was chosen.
    """
    recent = (champion.metrics_current or {}).get("r2")
    holdout = (champion.metrics_holdout or {}).get("r2")
    if recent is None or holdout is None:
        return None
    return (1.0 - float(recent)) / max(1.0 - float(holdout), 1e-6)


def has_decayed(champion: ChampionScore, max_ratio: float) -> bool:
    """Whether the champion's recent error share is clearly worse than its holdout's."""
    ratio = decay_ratio(champion)
    return ratio is not None and ratio >= max_ratio


def score_champion(registry: Registry, model_type: str, current: pd.DataFrame) -> ChampionScore:
    """Score the champion of ``model_type`` on the labelled rows of ``current`` (canonical).

    No champion, no labelled rows or an unreachable registry skip the scoring (with a reason).
    """
    if COUNT_COLUMN in current.columns:
        labelled = current[current[COUNT_COLUMN].notna()]
    else:
        labelled = current[:0]
    if labelled.empty:
        return ChampionScore(model_type, reason="the current data has no counts to score on")
    try:
        version = registry.choose_version(model_type)
        model = registry.load_version(model_type, version)
        holdout = next(
            (v.metrics for v in registry.list_versions(model_type) if v.version == version), {}
        )
    except ModelNotFoundError as exc:
        return ChampionScore(model_type, reason=str(exc))
    except (RegistryUnavailableError, OSError) as exc:
        logger.warning("champion of %s not scored: %s", model_type, exc)
        return ChampionScore(model_type, reason=f"the registry could not be read: {exc}")
    metrics = score_model(model, get_spec(model_type).task, labelled)
    return ChampionScore(
        model_type,
        version=version,
        rows=len(labelled),
        metrics_current=finite_metrics(metrics, digits=4),
        metrics_holdout=finite_metrics(holdout, digits=4),
    )
