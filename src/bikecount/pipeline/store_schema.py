"""The pipeline store's tables: raw counts by day, ingest log, predictions, daily errors, audit,
counter health.

The schema alone, so that readers (the dashboard) can query the tables without the store's
write path. Timestamps are naive UTC; ``day`` is the local Paris day each write replaces whole.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Columns added to a table after stores were created with it: ``open_store`` adds them (all
# nullable) to an older store, so that one made before them keeps working.
ADDED_COLUMNS = {"predictions": ("lower", "upper")}

raw_counts = Table(
    "raw_counts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("counter", String(255), nullable=False),
    Column("timestamp", DateTime, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("count", Float),
    UniqueConstraint("counter", "timestamp", name="uq_raw_counts_counter_timestamp"),
)

ingest_log = Table(
    "ingest_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("rows_in", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("ingested_at", DateTime, nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("counter", String(255), nullable=False),
    Column("timestamp", DateTime, nullable=False),
    Column("prediction", Float, nullable=False),
    # The prediction's interval (bikecount.intervals); NULL when none could be calibrated yet.
    Column("lower", Float),
    Column("upper", Float),
    Column("model_type", String(32), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("predicted_at", DateTime, nullable=False),
    UniqueConstraint(
        "model_type", "model_version", "counter", "timestamp", name="uq_predictions_row"
    ),
)

daily_errors = Table(
    "daily_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("model_type", String(32), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("rmse", Float, nullable=False),
    Column("mae", Float, nullable=False),
    Column("n", Integer, nullable=False),
    Column("computed_at", DateTime, nullable=False),
    UniqueConstraint("day", "model_type", "model_version", name="uq_daily_errors_version"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_at", DateTime, nullable=False),
    Column("model_type", String(32), nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("drift_detected", Boolean),
    Column("counts_drifted", Boolean),
    Column("drift_share", Float),
    Column("champion_version", Integer),
    Column("champion_metrics", JSON),
    Column("retrained", Boolean, nullable=False),
    Column("new_version", Integer),
    Column("promoted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("mlflow_run_id", String(64)),
)

# One row per counter and checked day (`bikecount pipeline health`): the day's status and its
# evidence, as :class:`bikecount.health.CounterHealth` says them; a re-check replaces the day.
counter_health = Table(
    "counter_health",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, index=True),
    Column("counter", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("since", DateTime),
    Column("expected", Float),
    Column("observed", Float),
    Column("lower", Float),
    Column("upper", Float),
    Column("hours", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("checked_at", DateTime, nullable=False),
    UniqueConstraint("day", "counter", name="uq_counter_health_day_counter"),
)
