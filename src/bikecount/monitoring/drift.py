"""Data drift: current records compared with the reference, frames in and a summary out.

:func:`compute_drift` runs Evidently's ``DataDriftPreset`` on the model's input features (counter
and calendar features, built by the one feature module) and on the target when both sides carry
it. Nothing here reads a file, writes a report or logs a run: :mod:`bikecount.monitoring.run`
does that around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np
import pandas as pd

from bikecount.config import Settings
from bikecount.features import calendar_features
from bikecount.records import COUNT_COLUMN, COUNTER_COLUMN, TIMESTAMP_COLUMN

TARGET = COUNT_COLUMN
# Few distinct values: compared as categories (a distance on histograms), not as numbers whose
# spread a Wasserstein distance would divide by (zero for a flag that never fires).
CATEGORICAL_FEATURES = (
    "counter", "hour", "weekday", "month", "is_weekend", "is_holiday", "is_school_holiday",
)  # fmt: skip
NUMERICAL_FEATURES = ("day_of_year",)

# Evidently's snapshot as a JSON document (Evidently has no type information).
SnapshotJson = Mapping[str, Any]


class ColumnScore(TypedDict):
    """One column's drift: Evidently's score, its method and threshold, and the verdict."""

    score: float | None
    method: str | None
    threshold: float | None
    drifted: bool


class DriftReport(Protocol):
    """Evidently's result, as far as bikecount uses it: its JSON, and an HTML page."""

    def dict(self) -> SnapshotJson: ...

    def save_html(self, filename: str) -> None: ...


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
    column_scores: dict[str, ColumnScore]
    n_reference: int
    n_current: int
    share_threshold: float
    target_drift: ColumnScore | None = None
    report_path: str | None = None
    snapshot: DriftReport | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary (the Evidently snapshot stays out)."""
        data = asdict(self)
        data.pop("snapshot")
        return data


def drift_features(records: pd.DataFrame) -> pd.DataFrame:
    """The model's input features of canonical records (and the target when present).

    One function for both sides, so reference and current are compared on identical columns.
    """
    features = calendar_features(records[TIMESTAMP_COLUMN])
    features.insert(0, COUNTER_COLUMN, records[COUNTER_COLUMN].astype(str).to_numpy())
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
        The summary; ``snapshot`` holds Evidently's result for
        :func:`~bikecount.monitoring.reports.write_report`.

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
    snapshot = run_evidently(ref[columns], cur[columns], settings)
    scores = column_scores(snapshot.dict())
    drifted = [name for name, score in scores.items() if score["drifted"]]
    share = len(drifted) / len(scores) if scores else 0.0
    target = scores.get(TARGET) if with_target else None
    counts_drifted = target is not None and target["drifted"]
    return DriftSummary(
        drift_detected=share >= settings.drift_share_threshold or counts_drifted,
        drift_share=round(share, 4),
        drifted_columns=drifted,
        column_scores=scores,
        n_reference=len(reference),
        n_current=len(current),
        share_threshold=settings.drift_share_threshold,
        target_drift=target,
        snapshot=snapshot,
    )


def run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, settings: Settings
) -> DriftReport:
    """Evidently's drift report of two frames of the same feature columns (its snapshot)."""
    # Imported here: Evidently takes about 3 s to import, and most users of this module (the
    # CLI's other commands, the APIs until a drift is asked for) never compute one.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(reference.columns)
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
        snapshot: DriftReport = Report([preset], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    return snapshot


def column_scores(snapshot: SnapshotJson) -> dict[str, ColumnScore]:
    """Per-column score, method, threshold and verdict from an Evidently 0.7 snapshot dict.

    Scores are ``ValueDrift`` metrics; the verdict is the status of the test bound to each (a
    p-value drifts below its threshold, a distance above: Evidently knows which, so we ask it).
    """
    failed = {
        test["metric_config"]["metric_id"]: test["status"] == "FAIL"
        for test in snapshot.get("tests", [])
        if "metric_config" in test
    }
    scores: dict[str, ColumnScore] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        value = float(metric["value"])
        scores[config["column"]] = ColumnScore(
            score=round(value, 6) if math.isfinite(value) else None,
            method=config.get("method"),
            threshold=config.get("threshold"),
            drifted=bool(failed.get(metric["id"], False)),
        )
    return scores
