"""Data drift and model decay: compare current records with the reference, score the champion.

:func:`compute_drift` runs Evidently's ``DataDriftPreset`` on the model's input features (counter
and calendar features, built by the one feature module) and on the target when both sides carry
it. :func:`score_champion` scores the champion on the labelled current records, next to its holdout
metrics. :func:`run_monitoring` does both on files or frames, writes the HTML report and logs an
MLflow run.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import mlflow
import numpy as np
import pandas as pd

from bikecount.config import Settings
from bikecount.data.io import DataFileError, read_records
from bikecount.evaluate import finite_metrics, score_model
from bikecount.faults import storage_fault
from bikecount.features import calendar_features
from bikecount.fingerprint import file_fingerprint
from bikecount.models import get_spec
from bikecount.records import RecordError, parse_records
from bikecount.registry import ModelNotFoundError, Registry, RegistryUnavailableError

logger = logging.getLogger(__name__)

# The monitoring experiment, ``<prefix>-monitoring`` (see Settings.mlflow_name).
MONITORING = "monitoring"
TARGET = "count"
# Few distinct values: compared as categories (a distance on histograms), not as numbers whose
# spread a Wasserstein distance would divide by (zero for a flag that never fires).
CATEGORICAL_FEATURES = (
    "counter", "hour", "weekday", "month", "is_weekend", "is_holiday", "is_school_holiday",
)  # fmt: skip
NUMERICAL_FEATURES = ("day_of_year",)


@dataclass
class DriftSummary:
    """What drifted: the verdict, the share of drifted columns and each column's score.

    The data drifted (``drift_detected``) when the share of drifted columns reaches its
    threshold, or when the counts themselves drifted: calendar columns drift between any two
    periods, so the share alone misses a change in traffic that leaves the calendar as it was
    (a lockdown, the summer holidays). The pipeline's retraining rule reads this same verdict.
    """

    drift_detected: bool
    drift_share: float
    drifted_columns: list[str]
    column_scores: dict[str, dict[str, Any]]
    n_reference: int
    n_current: int
    share_threshold: float
    target_drift: dict[str, Any] | None = None
    report_path: str | None = None
    snapshot: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the Evidently snapshot stays out)."""
        data = asdict(self)
        data.pop("snapshot")
        return data


def drift_features(records: pd.DataFrame) -> pd.DataFrame:
    """The model's input features of canonical records (and the target when present).

    One function for both sides, so reference and current are compared on identical columns.
    """
    features = calendar_features(records["timestamp"])
    features.insert(0, "counter", records["counter"].astype(str).to_numpy())
    if TARGET in records.columns and records[TARGET].notna().any():
        features[TARGET] = records[TARGET].to_numpy(dtype=float)
    return features.reset_index(drop=True)


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, drawn without replacement with a fixed seed (reproducible runs)."""
    if len(frame) <= limit:
        return frame
    return frame.sample(n=limit, random_state=seed)


def compute_drift(
    reference: pd.DataFrame, current: pd.DataFrame, settings: Settings
) -> DriftSummary:
    """Compare current canonical records with the reference using Evidently.

    Args:
        reference: canonical records (``records.parse_records(...).frame``) the model knows.
        current: canonical records to check; ``count`` is compared when both sides have it.
        settings: the drift thresholds, method and sample bound.

    Returns:
        The summary; ``snapshot`` holds Evidently's result for :func:`write_report`.

    Raises:
        ValueError: either side has no records.
    """
    if reference.empty or current.empty:
        side = "reference" if reference.empty else "current"
        raise ValueError(f"the {side} data has no valid records to compare")
    limit, seed = settings.drift_sample_rows, settings.seed
    ref = drift_features(sample_rows(reference, limit, seed))
    cur = drift_features(sample_rows(current, limit, seed))
    with_target = TARGET in ref.columns and TARGET in cur.columns
    columns = [c for c in ref.columns if c in cur.columns and (c != TARGET or with_target)]
    # Imported here: Evidently takes about 3 s to import, and most users of this module (the
    # CLI's other commands, the APIs until a drift is asked for) never compute one.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c in columns if c in NUMERICAL_FEATURES or c == TARGET],
        categorical_columns=[c for c in columns if c in CATEGORICAL_FEATURES],
    )
    preset = DataDriftPreset(
        columns=columns,
        drift_share=settings.drift_share_threshold,
        method=settings.drift_method,
        threshold=settings.drift_column_threshold,
    )
    # A handful of current records makes empty histogram bins: numpy's warnings are noise there.
    with np.errstate(all="ignore"):
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(cur[columns], data_definition=definition),
            Dataset.from_pandas(ref[columns], data_definition=definition),
        )
    scores = column_scores(snapshot.dict())
    drifted = [name for name, score in scores.items() if score["drifted"]]
    share = len(drifted) / len(scores) if scores else 0.0
    counts_drifted = with_target and bool(scores.get(TARGET, {}).get("drifted"))
    return DriftSummary(
        drift_detected=share >= settings.drift_share_threshold or counts_drifted,
        drift_share=round(share, 4),
        drifted_columns=drifted,
        column_scores=scores,
        n_reference=len(reference),
        n_current=len(current),
        share_threshold=settings.drift_share_threshold,
        target_drift=scores.get(TARGET) if with_target else None,
        snapshot=snapshot,
    )


def column_scores(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-column score, method, threshold and verdict from an Evidently 0.7 snapshot dict.

    Scores are ``ValueDrift`` metrics; the verdict is the status of the test bound to each (a
    p-value drifts below its threshold, a distance above: Evidently knows which, so we ask it).
    """
    failed = {
        test["metric_config"]["metric_id"]: test["status"] == "FAIL"
        for test in snapshot.get("tests", [])
        if "metric_config" in test
    }
    scores: dict[str, dict[str, Any]] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        value = float(metric["value"])
        scores[config["column"]] = {
            "score": round(value, 6) if math.isfinite(value) else None,
            "method": config.get("method"),
            "threshold": config.get("threshold"),
            "drifted": bool(failed.get(metric["id"], False)),
        }
    return scores


def write_report(snapshot: Any, path: Path | str) -> str:
    """Save Evidently's HTML report (folders created); return its path as text.

    Raises:
        StorageError: the reports' disk is full, read-only or forbidden (no partial file kept).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(target))
    except OSError as exc:
        with suppress(OSError):  # a read-only disk keeps no partial file to remove
            target.unlink(missing_ok=True)
        fault = storage_fault(exc, str(target), "writing the drift report", "BIKECOUNT_REPORTS_DIR")
        if fault is None:
            raise
        raise fault from exc
    logger.info("drift report written to %s", target)
    return str(target)


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

    No champion, no labelled rows or an unreachable registry skip the scoring (with a reason):
    drift is still worth reporting without it.
    """
    labelled = current[current[TARGET].notna()] if TARGET in current.columns else current[:0]
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


@dataclass
class MonitoringResult:
    """One monitoring run: the drift summary, the champion's scores and the MLflow run."""

    drift: DriftSummary
    champion: ChampionScore
    run_id: str
    sources: dict[str, str]
    duration_seconds: float
    experiment: str

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.drift.as_dict(),
            "champion": asdict(self.champion),
            "run_id": self.run_id,
            "experiment": self.experiment,
            "sources": self.sources,
            "duration_seconds": self.duration_seconds,
        }


def read_canonical(path: Path) -> pd.DataFrame:
    """The valid canonical records of a file (invalid rows dropped and logged)."""
    parsed = parse_records(read_records(path))
    if parsed.dropped_rows:
        logger.warning("%s: %d invalid rows dropped", path, parsed.dropped_rows)
    return parsed.frame


class MonitoringDataError(ValueError):
    """One side of a comparison cannot be used; ``side`` says which (reference or current)."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side


MonitoringData: TypeAlias = Path | pd.DataFrame


def monitoring_input(side: str, data: MonitoringData) -> tuple[pd.DataFrame, dict[str, str]]:
    """One side's canonical records and what to record about where they came from.

    A path is read (invalid rows dropped) and fingerprinted; a frame is canonical records
    already read, such as those of a request body.

    Raises:
        MonitoringDataError: the file is missing, unreadable or not in the export format.
    """
    if isinstance(data, pd.DataFrame):
        return data, {side: f"request body ({len(data):,} records)"}
    path = Path(data)
    try:
        frame = read_canonical(path)
        fingerprint = file_fingerprint(path)
    except (DataFileError, RecordError, OSError) as exc:
        raise MonitoringDataError(side, str(exc)) from exc
    return frame, {side: str(path), f"{side}_fingerprint": fingerprint}


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
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    summary.report_path = write_report(
        summary.snapshot, settings.reports_dir / f"drift_{stamp}.html"
    )
    champion = score_champion(registry, model_type, current)
    run_id = log_monitoring_run(settings, registry, summary, champion, sources)
    elapsed = round(time.perf_counter() - started, 2)
    logger.info(
        "monitoring run %s: drift share %.2f in %.1f s", run_id, summary.drift_share, elapsed
    )
    experiment = settings.mlflow_name(MONITORING)
    return MonitoringResult(summary, champion, run_id, sources, elapsed, experiment)


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
    with mlflow.start_run(experiment_id=experiment_id, run_name="drift") as run:
        mlflow.set_tags({**sources, "model_type": champion.model_type, "env": settings.env})
        if champion.version is not None:
            mlflow.set_tag("champion_version", str(champion.version))
        mlflow.log_params({"share_threshold": summary.share_threshold})
        mlflow.log_metrics(metrics)
        if summary.report_path:
            mlflow.log_artifact(summary.report_path, artifact_path="drift_report")
    return run.info.run_id


def monitoring_experiment(registry: Registry) -> str:
    """The id of the monitoring experiment, created like the training ones (see registry)."""
    return registry.ensure_experiment(registry.settings.mlflow_name(MONITORING))
