"""A monitoring run: read both sides, compute drift, score the champion, write the HTML report
and log an MLflow run in the monitoring experiment.

The computations are :func:`~bikecount.monitoring.drift.compute_drift` (pure) and
:func:`~bikecount.monitoring.decay.score_champion`; this module is the edges around them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import mlflow
import pandas as pd

from bikecount.config import Settings
from bikecount.monitoring.decay import ChampionScore, score_champion
from bikecount.monitoring.drift import DriftSummary, compute_drift
from bikecount.monitoring.inputs import MonitoringData, MonitoringDataError, monitoring_input
from bikecount.monitoring.reports import new_report_path, write_report
from bikecount.registry import Registry

logger = logging.getLogger(__name__)

# The monitoring experiment, ``<prefix>-monitoring`` (see Settings.mlflow_name).
MONITORING = "monitoring"


@dataclass
class MonitoringResult:
    """One monitoring run: the drift summary, the champion's scores and the MLflow run."""

    drift: DriftSummary
    champion: ChampionScore
    run_id: str
    sources: dict[str, str]
    duration_seconds: float
    experiment: str

    def as_dict(self) -> dict[str, object]:
        return {
            **self.drift.as_dict(),
            "champion": asdict(self.champion),
            "run_id": self.run_id,
            "experiment": self.experiment,
            "sources": self.sources,
            "duration_seconds": self.duration_seconds,
        }


def run_monitoring(
    settings: Settings,
    registry: Registry,
    reference: MonitoringData,
    current: MonitoringData,
    model_type: str = "gbm",
) -> MonitoringResult:
    """Compute drift, score the champion, write the report and log to MLflow, on files or on
    canonical frames (each side either).

    Raises:
        MonitoringDataError: a side cannot be read, or has no valid records (its ``side``).
    """
    # The current side first: it is what the caller brings, so its fault is named first.
    current_frame, current_sources = monitoring_input("current", current)
    reference_frame, sources = monitoring_input("reference", reference)
    sources.update(current_sources)
    for side, frame in (("reference", reference_frame), ("current", current_frame)):
        if frame.empty:
            raise MonitoringDataError(side, f"the {side} data has no valid records to compare")
    return monitor_frames(settings, registry, reference_frame, current_frame, model_type, sources)


def monitor_frames(
    settings: Settings,
    registry: Registry,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    model_type: str,
    sources: dict[str, str],
) -> MonitoringResult:
    """:func:`run_monitoring` on canonical frames, with the sources already described (the
    retraining pipeline compares windows of the store)."""
    started = time.perf_counter()
    summary = compute_drift(reference, current, settings)
    if summary.snapshot is not None:
        report = write_report(summary.snapshot, new_report_path(settings.reports_dir))
        summary.report_path = report
    champion = score_champion(registry, model_type, current)
    run_id = log_monitoring_run(settings, registry, summary, champion, sources)
    elapsed = round(time.perf_counter() - started, 2)
    logger.info(
        "monitoring run %s: drift share %.2f in %.1f s", run_id, summary.drift_share, elapsed
    )
    experiment = settings.mlflow_name(MONITORING)
    return MonitoringResult(summary, champion, run_id, sources, elapsed, experiment)


def run_metrics(summary: DriftSummary, champion: ChampionScore) -> dict[str, float]:
    """What a monitoring run logs as MLflow metrics: the drift figures, each column's score and
    the champion's current metrics (those that are numbers)."""
    metrics: dict[str, float] = {
        "drift_share": summary.drift_share,
        "drift_detected": float(summary.drift_detected),
        "n_drifted_columns": float(len(summary.drifted_columns)),
    }
    for column, score in summary.column_scores.items():
        if score["score"] is not None:
            metrics[f"drift_score_{column}"] = score["score"]
    for name, value in (champion.metrics_current or {}).items():
        if value is not None:
            metrics[f"champion_{name}_current"] = value
    return metrics


def log_monitoring_run(
    settings: Settings,
    registry: Registry,
    summary: DriftSummary,
    champion: ChampionScore,
    sources: dict[str, str],
) -> str:
    """Log the summary as metrics and the HTML report as an artifact; return the run id."""
    registry.use_for_runs()
    experiment_id = monitoring_experiment(registry)
    with mlflow.start_run(experiment_id=experiment_id, run_name="drift") as run:
        mlflow.set_tags({**sources, "model_type": champion.model_type, "env": settings.env})
        if champion.version is not None:
            mlflow.set_tag("champion_version", str(champion.version))
        mlflow.log_params({"share_threshold": summary.share_threshold})
        mlflow.log_metrics(run_metrics(summary, champion))
        if summary.report_path:
            mlflow.log_artifact(summary.report_path, artifact_path="drift_report")
    return run.info.run_id


def monitoring_experiment(registry: Registry) -> str:
    """The id of the monitoring experiment, created like the training ones (see registry)."""
    return registry.ensure_experiment(registry.settings.mlflow_name(MONITORING))
