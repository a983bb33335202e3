"""Monitor and retrain: drift of the recent stored counts, the champion on them, and a decision.

Retraining is worth its cost only when the data moved *and* the champion suffers from it: drift
alone (seasons drift by construction) or a weak score alone (a hard week) is not enough, unless
forced. The new model is trained by the RegModel API on reference + stored records, holding
out the recent days; the API crowns it only if it beats the champion on them, and says so. Every
decision, and why, is written to the ``audit`` table and logged to MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import pandas as pd

from bikecount.config import Settings
from bikecount.data.io import write_records
from bikecount.monitoring.decay import decay_ratio as current_decay_ratio
from bikecount.monitoring.decay import has_decayed
from bikecount.monitoring.drift import DriftSummary
from bikecount.monitoring.inputs import read_canonical
from bikecount.monitoring.run import MonitoringResult, monitor_frames, monitoring_experiment
from bikecount.pipeline import PipelineError, call_api
from bikecount.pipeline.store import last_day, read_counts, write_audit
from bikecount.pipeline.store_engine import open_pipeline_store
from bikecount.records import (
    CANONICAL_COLUMNS,
    COUNT,
    COUNT_COLUMN,
    COUNTER_COLUMN,
    RECORD_KEY,
    TIMESTAMP_COLUMN,
    to_raw_records,
)
from bikecount.registry import Registry, RegistryUnavailableError

logger = logging.getLogger(__name__)

RUN_NAME = "monitor-and-retrain"
TRAIN_TIMEOUT_SECONDS = 900.0


@dataclass
class RetrainDecision:
    """Whether to retrain, and why (in words a reader of the audit table understands)."""

    retrain: bool
    reason: str


@dataclass
class RetrainResult:
    """One monitor-and-retrain run: what was measured, decided and done."""

    model_type: str
    forced: bool
    drift_detected: bool
    counts_drifted: bool
    drift_share: float
    champion_version: int | None
    champion_metrics: dict[str, float | None] | None
    retrain_due: bool
    retrained: bool
    promoted: bool
    reason: str
    new_version: int | None = None
    new_metrics: dict[str, float | None] | None = None
    data_path: str | None = None
    holdout_from: str | None = None
    audit_id: int | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetrainResult:
        """The result back from :meth:`as_dict` (how Airflow tasks hand it on)."""
        return cls(**values)


def decide(
    monitoring: MonitoringResult,
    threshold: float,
    force: bool,
    decay_ratio: float = Settings.model_fields["retrain_decay_ratio"].default,
) -> RetrainDecision:
    """Retrain when forced, when the champion decayed, or on drift with a weak champion.

    - Decay, whatever the drift: the champion's error share (1 - R²) on the recent data is at
      least ``decay_ratio`` times its holdout's. Drift against a fixed past can stop showing
      while the champion falls behind the latest weeks.
    - Drift (see :class:`~bikecount.monitoring.drift.DriftSummary`) and the champion's recent R²
      below ``threshold``, or no champion to defend.
    """
    drift, champion = monitoring.drift, monitoring.champion
    r2 = (champion.metrics_current or {}).get("r2")
    ratio = current_decay_ratio(champion)
    drift_words = (
        f"drift share {drift.drift_share:.2f} (threshold {drift.share_threshold:.2f}), "
        f"counts {'drifted' if counts_drifted(drift) else 'stable'}"
    )
    score_words = (
        f"champion R² {r2:.3f} on recent data (threshold {threshold:.2f})"
        if r2 is not None
        else f"champion not scored: {champion.reason or 'no R²'}"
    )
    if ratio is not None:
        score_words += (
            f", recent error share 1-R² {ratio:.2f}× its holdout's (decay at {decay_ratio:.2f}×)"
        )
    if force:
        return RetrainDecision(True, f"forced; {drift_words}; {score_words}")
    if has_decayed(champion, decay_ratio):
        return RetrainDecision(True, f"champion decayed: {score_words}; {drift_words}")
    if not drift_detected(drift):
        return RetrainDecision(False, f"no drift: {drift_words}; {score_words}")
    if r2 is None:
        return RetrainDecision(True, f"drift detected: {drift_words}; {score_words}")
    if r2 < threshold:
        return RetrainDecision(True, f"drift detected and R² too low: {drift_words}; {score_words}")
    return RetrainDecision(
        False, f"drift detected but champion holds: {drift_words}; {score_words}"
    )


def counts_drifted(drift: DriftSummary) -> bool:
    """Whether the hourly counts (the target) drifted; False when they were not compared."""
    return drift.target_drift is not None and drift.target_drift["drifted"]


def drift_detected(drift: DriftSummary) -> bool:
    """Drift of the data set (share of columns) or of the counts: the monitor's own verdict."""
    return drift.drift_detected


def recent_counts(settings: Settings, days: int) -> pd.DataFrame:
    """The labelled stored counts of the last ``days`` stored days, as canonical records."""
    engine = open_pipeline_store(settings)
    latest = last_day(engine)
    if latest is None:
        raise PipelineError("no raw counts in the store: run `bikecount pipeline ingest` first")
    # Only the recent days leave the database for the drift check and the champion's score.
    return labelled(read_counts(engine, latest - timedelta(days=days - 1), latest))


def stored_history(settings: Settings) -> pd.DataFrame:
    """Every labelled stored count: what a retraining adds to the reference data."""
    return labelled(read_counts(open_pipeline_store(settings)))


def labelled(counts: pd.DataFrame) -> pd.DataFrame:
    return counts[counts[COUNT_COLUMN].notna()][list(CANONICAL_COLUMNS)].reset_index(drop=True)


def reference_records(settings: Settings) -> pd.DataFrame:
    """The reference data set's valid records (what the champion was trained on)."""
    path = settings.dataset_path("reference")
    if not path.is_file():
        raise PipelineError(f"reference data not found: {path} (run `bikecount data prepare`)")
    return read_canonical(path)


def champion_window(
    settings: Settings,
    registry: Registry,
    model_type: str,
    reference: pd.DataFrame,
    history: pd.DataFrame,
) -> tuple[pd.DataFrame, str]:
    """What the champion was trained on: reference + stored records up to its trained_until.

    Drift is measured against it, not against a fixed reference that the champion may have
    left behind long ago. Without a champion (or an unreachable registry) it is the reference.
    """
    try:
        until = registry.champion_trained_until(model_type)
    except RegistryUnavailableError as exc:
        logger.warning("champion's training window unknown, drift against reference: %s", exc)
        until = None
    if until is None:
        return reference, str(settings.dataset_path("reference"))
    both = stored_over_reference(reference, history)
    window = both[both[TIMESTAMP_COLUMN] <= until]
    if window.empty:
        return reference, str(settings.dataset_path("reference"))
    return window.reset_index(drop=True), f"champion's training window (to {until.isoformat()})"


def stored_over_reference(reference: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Reference and stored records together, a stored count winning over a reference count of
    the same counter and hour."""
    columns = list(CANONICAL_COLUMNS)
    both = pd.concat([reference[columns], history[columns]], ignore_index=True)
    return both.drop_duplicates(list(RECORD_KEY), keep="last")


def write_training_file(settings: Settings, reference: pd.DataFrame, history: pd.DataFrame) -> str:
    """Reference + stored records as an export file in the data folder; return its name.

    The API reads training files from its own data folder only, so the name is relative to it.
    A stored value wins over a reference value of the same counter and hour.
    """
    both = stored_over_reference(reference, history)
    both = both.sort_values([TIMESTAMP_COLUMN, COUNTER_COLUMN]).reset_index(drop=True)
    raw = to_raw_records(both)
    raw[COUNT] = both[COUNT_COLUMN].astype(int).to_numpy()
    name = f"retrain_{datetime.now(UTC):%Y%m%dT%H%M%S%f}.csv"
    write_records(raw, settings.data_dir / name)
    return name


def monitor_and_retrain(
    settings: Settings,
    registry: Registry,
    api_url: str | None = None,
    force: bool = False,
    model_type: str | None = None,
    *,
    recent_days: int | None = None,
    test_mode: bool | None = None,
) -> RetrainResult:
    """Assess drift and the champion on recent stored counts, retrain if due, record it all.

    Args:
        settings: store URL, data folder, thresholds and ``pipeline_*`` defaults.
        registry: where the champion is read and the decision logged (MLflow).
        api_url: the RegModel API that trains (``POST /train``, waiting for the result).
        force: retrain whatever drift and scores say.
        model_type: the model family watched and retrained.
        recent_days: how many of the last stored days count as recent.
        test_mode: ask the API for its fast training settings (tests, demos).

    Raises:
        PipelineError: no stored counts, no reference data, or the API failed the training (the
            audit row of the run records the failure).
    """
    result = assess(settings, registry, model_type, force, recent_days)
    try:
        retrain(settings, result, api_url, test_mode)
    except PipelineError as exc:
        record(settings, registry, result, failure=str(exc))
        raise
    return record(settings, registry, result)


def assess(
    settings: Settings,
    registry: Registry,
    model_type: str | None = None,
    force: bool = False,
    recent_days: int | None = None,
) -> RetrainResult:
    """Drift of the recent stored counts against reference, the champion on them, the decision.

    When retraining is due, the training file (reference + every stored day) is written to the
    data folder and named in ``data_path``; ``holdout_from`` is the first recent day.
    """
    model_type = model_type or settings.pipeline_model_type
    recent_days = recent_days or settings.pipeline_recent_days
    reference, recent = reference_records(settings), recent_counts(settings, recent_days)
    history = stored_history(settings)
    window, described = champion_window(settings, registry, model_type, reference, history)
    sources = {"reference": described, "current": "pipeline store"}
    monitoring = monitor_frames(settings, registry, window, recent, model_type, sources)
    decision = decide(
        monitoring, settings.retrain_r2_threshold, force, settings.retrain_decay_ratio
    )
    result = RetrainResult(
        model_type=model_type,
        forced=force,
        drift_detected=drift_detected(monitoring.drift),
        counts_drifted=counts_drifted(monitoring.drift),
        drift_share=monitoring.drift.drift_share,
        champion_version=monitoring.champion.version,
        champion_metrics=monitoring.champion.metrics_current,
        retrain_due=decision.retrain,
        retrained=False,
        promoted=False,
        reason=decision.reason,
    )
    if decision.retrain:
        # Every stored day, not only the recent ones: a second retraining must not forget the
        # weeks the first one learnt. The recent days are the holdout both models are scored on.
        result.data_path = write_training_file(settings, reference, history)
        result.holdout_from = recent[TIMESTAMP_COLUMN].min().date().isoformat()
    return result


def retrain(
    settings: Settings,
    result: RetrainResult,
    api_url: str | None = None,
    test_mode: bool | None = None,
) -> RetrainResult:
    """Train through ``POST /train`` when due and fill ``result`` with the version and verdict.

    The API holds out the recent days (``holdout_from`` on), fits on everything before, and
    crowns the new version only if it beats the champion on those days; it says why either way.

    Raises:
        PipelineError: the API is down, or refused or failed the training.
    """
    if not result.retrain_due:
        return result
    payload = {
        "model_type": result.model_type,
        "data_source": result.data_path,
        "holdout_from": result.holdout_from,
        "wait": True,
        "test_mode": settings.pipeline_test_mode if test_mode is None else test_mode,
    }
    api_url = api_url or settings.pipeline_api_url
    trained = call_api(settings, api_url, "/train", payload, TRAIN_TIMEOUT_SECONDS)
    result.retrained = True
    result.new_version = int(trained["model_version"])
    result.new_metrics = trained.get("metrics")
    result.promoted = bool(trained["champion"])
    verdict = "promoted" if result.promoted else "not promoted"
    result.reason += f"; retrained v{result.new_version}, {verdict}: {trained['champion_reason']}"
    return result


def record(
    settings: Settings, registry: Registry, result: RetrainResult, failure: str | None = None
) -> RetrainResult:
    """Log the run to MLflow, then write its audit row (written even if MLflow fails).

    ``failure`` says why a due retraining did not happen; it joins the reason.
    """
    if failure:
        result.reason += f"; retraining failed: {failure}"
    try:
        result.run_id = log_decision(settings, registry, result)
    except Exception as exc:  # noqa: BLE001 - the audit row matters more than the MLflow copy
        logger.warning("monitor-and-retrain not logged to MLflow: %s", exc)
    row = {
        key: getattr(result, key)
        for key in ("model_type", "forced", "drift_detected", "counts_drifted", "drift_share",
                    "champion_version", "champion_metrics", "retrained", "new_version",
                    "promoted", "reason")
    }  # fmt: skip
    result.audit_id = write_audit(
        open_pipeline_store(settings), {**row, "mlflow_run_id": result.run_id}
    )
    logger.info("audit %s: %s", result.audit_id, result.reason)
    return result


def log_decision(settings: Settings, registry: Registry, result: RetrainResult) -> str:
    """One MLflow run per decision in the monitoring experiment; return its id."""
    registry.use_for_runs()
    experiment_id = monitoring_experiment(registry)
    metrics = {
        "drift_share": result.drift_share,
        "drift_detected": float(result.drift_detected),
        "counts_drifted": float(result.counts_drifted),
        "retrained": float(result.retrained),
        "promoted": float(result.promoted),
    }
    for name, value in (result.champion_metrics or {}).items():
        if value is not None:
            metrics[f"champion_{name}_recent"] = value
    with mlflow.start_run(experiment_id=experiment_id, run_name=RUN_NAME) as run:
        mlflow.set_tags(
            {
                "model_type": result.model_type,
                "forced": str(result.forced),
                "reason": result.reason[:5000],
            }
        )
        if result.new_version is not None:
            mlflow.set_tag("new_version", str(result.new_version))
        mlflow.log_params({"retrain_r2_threshold": settings.retrain_r2_threshold})
        mlflow.log_metrics(metrics)
    logger.debug("logged %s run %s in experiment %s", RUN_NAME, run.info.run_id, experiment_id)
    return run.info.run_id
