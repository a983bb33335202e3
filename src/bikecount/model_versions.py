"""What a registered version is (:class:`VersionInfo`), what its run says it knows, and which
version a metric prefers: decisions on what the registry returned, without asking it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion

from bikecount.evaluate import HIGHER_IS_BETTER, finite_metrics
from bikecount.registry_errors import ModelNotFoundError


@dataclass
class VersionInfo:
    """A registered version with what selects it: its holdout metrics and tags."""

    model_type: str
    version: int
    run_id: str
    champion: bool
    test_mode: bool
    env: str | None
    created: int
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "model_type": self.model_type,
            "version": self.version,
            "run_id": self.run_id,
            "champion": self.champion,
            "test_mode": self.test_mode,
            "env": self.env,
            "created": self.created,
            "metrics": finite_metrics(self.metrics),
        }


def version_info(
    model_type: str, version: ModelVersion, champion: ModelVersion | None, run: Run | None
) -> VersionInfo:
    """A registered version described by its run (None: a version with no run)."""
    metrics = {k: v for k, v in run.data.metrics.items() if k in HIGHER_IS_BETTER} if run else {}
    tags = run.data.tags if run else {}
    return VersionInfo(
        model_type=model_type,
        version=int(version.version),
        run_id=version.run_id or "",
        champion=champion is not None and champion.version == version.version,
        test_mode=tags.get("test_mode") == "true",
        env=tags.get("env"),
        created=int(version.creation_timestamp or 0),
        metrics=metrics,
    )


def check_metric(metric: str) -> None:
    """Refuse a name that is not a holdout metric (ValueError naming the known ones)."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {', '.join(HIGHER_IS_BETTER)}"
        )


def best_of(versions: Iterable[VersionInfo], model_type: str, metric: str) -> VersionInfo:
    """The version with the best holdout ``metric`` (ties: the newest).

    Raises:
        ValueError: ``metric`` is not a holdout metric.
        ModelNotFoundError: no version has that metric.
    """
    check_metric(metric)
    scored = [v for v in versions if metric in v.metrics and not math.isnan(v.metrics[metric])]
    if not scored:
        raise ModelNotFoundError(f"no registered {model_type} version has the metric {metric!r}")
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(scored, key=lambda v: (sign * v.metrics[metric], v.version))


def trained_until(params: Mapping[str, str]) -> pd.Timestamp | None:
    """The last timestamp a registered model was fitted on, from its run's parameters.

    Runs made before refitting existed were fitted on the rows up to their holdout cutoff.
    """
    value = params.get("trained_until")
    if value is None and params.get("refit") is None:
        value = params.get("holdout_cutoff")
    return pd.Timestamp(value) if value else None
