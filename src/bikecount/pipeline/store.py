"""The pipeline's store: raw counts by day, ingest log, predictions, daily errors, the audit and
counter health.

SQLAlchemy Core over any URL (SQLite by default, PostgreSQL in production). Timestamps are stored
as naive UTC (SQLite keeps no offset); the local Paris ``day`` is the partition key that ingest
and prediction replace as a whole, inside one transaction, so a re-run never duplicates a day.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import pandas as pd
from sqlalchemy import Engine, Table, delete, func, insert, select

from bikecount.health import CounterHealth
from bikecount.pipeline.store_engine import reading, transaction
from bikecount.pipeline.store_schema import (
    audit,
    counter_health,
    daily_errors,
    ingest_log,
    predictions,
    raw_counts,
)
from bikecount.records import PARIS_TZ

logger = logging.getLogger(__name__)


def now_utc() -> datetime:
    """The current time as naive UTC, the store's convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_utc_naive(timestamps: pd.Series) -> list[datetime]:
    """Aware timestamps as naive UTC datetimes (what the ``DateTime`` columns hold)."""
    return [ts.to_pydatetime() for ts in timestamps.dt.tz_convert("UTC").dt.tz_localize(None)]


def to_paris(values: pd.Series) -> pd.Series:
    """Naive UTC datetimes from the store back to Europe/Paris local time."""
    return pd.to_datetime(values).dt.tz_localize("UTC").dt.tz_convert(PARIS_TZ)


def replace_day_counts(engine: Engine, day: date, frame: pd.DataFrame) -> int:
    """Replace the raw counts of ``day`` with the canonical ``frame``, in one transaction.

    Deleting first makes a re-run of a day idempotent; if the insert fails (a duplicate
    counter and hour, say) the delete is rolled back with it and the day keeps its old rows.

    Returns:
        The number of rows written.
    """
    rows = [
        {"day": day, "counter": c, "timestamp": ts, "lat": la, "lon": lo, "count": _num(n)}
        for c, ts, la, lo, n in zip(
            frame["counter"].astype(str),
            to_utc_naive(frame["timestamp"]),
            frame["lat"].astype(float),
            frame["lon"].astype(float),
            frame["count"],
            strict=True,
        )
    ]
    with transaction(engine) as conn:
        deleted = conn.execute(delete(raw_counts).where(raw_counts.c.day == day)).rowcount
        if rows:
            conn.execute(insert(raw_counts), rows)
    logger.info("day %s: %d raw rows replaced by %d", day, deleted, len(rows))
    return len(rows)


def _num(value: float | None) -> float | None:
    """A count for the store: None when missing (None or NaN)."""
    return None if value is None or pd.isna(value) else float(value)


def log_ingest(
    engine: Engine, day: date, source: str, rows_in: int, rejected: int, reasons: dict[str, int]
) -> None:
    """One ``ingest_log`` row per ingest run (re-runs add rows: the log is a history)."""
    row = {
        "day": day,
        "source": source,
        "rows_in": rows_in,
        "rows_rejected": rejected,
        "reasons": reasons,
        "ingested_at": now_utc(),
    }
    with transaction(engine) as conn:
        conn.execute(insert(ingest_log), row)


def read_counts(
    engine: Engine, first_day: date | None = None, last_day: date | None = None
) -> pd.DataFrame:
    """Stored raw counts between two days (inclusive) as canonical records, Paris time."""
    query = select(
        raw_counts.c.day, raw_counts.c.counter, raw_counts.c.timestamp,
        raw_counts.c.lat, raw_counts.c.lon, raw_counts.c["count"],
    ).order_by(raw_counts.c.timestamp, raw_counts.c.counter)  # fmt: skip
    if first_day is not None:
        query = query.where(raw_counts.c.day >= first_day)
    if last_day is not None:
        query = query.where(raw_counts.c.day <= last_day)
    with reading(engine) as conn:
        frame = pd.DataFrame(
            conn.execute(query).mappings().all(), columns=list(query.selected_columns.keys())
        )
    frame["timestamp"] = to_paris(frame["timestamp"])
    frame["count"] = frame["count"].astype(float)
    return frame


def last_day(engine: Engine) -> date | None:
    """The latest day with stored raw counts, None when there are none."""
    with reading(engine) as conn:
        return conn.execute(select(func.max(raw_counts.c.day))).scalar_one_or_none()


def ingested_days(engine: Engine, first_day: date, last_day: date) -> set[date]:
    """The days between two days (inclusive) that have stored raw counts."""
    query = (
        select(raw_counts.c.day)
        .where(raw_counts.c.day >= first_day, raw_counts.c.day <= last_day)
        .distinct()
    )
    with reading(engine) as conn:
        return set(conn.execute(query).scalars())


def known_counters(engine: Engine) -> pd.DataFrame:
    """Every counter of the raw counts, with its coordinates as last stored."""
    latest = select(raw_counts.c.counter, raw_counts.c.lat, raw_counts.c.lon).order_by(
        raw_counts.c.timestamp
    )
    with reading(engine) as conn:
        frame = pd.DataFrame(conn.execute(latest).all(), columns=["counter", "lat", "lon"])
    return (
        frame.drop_duplicates("counter", keep="last").sort_values("counter").reset_index(drop=True)
    )


def replace_predictions(engine: Engine, day: date, frame: pd.DataFrame, model_type: str) -> int:
    """Store a day's predictions (columns counter, timestamp, prediction, model_version, and
    optionally lower and upper: their interval, NaN for none).

    Earlier predictions of the same day by the same versions are replaced; those of other
    versions stay, so the errors of successive champions can be compared.
    """
    versions = sorted({int(v) for v in frame["model_version"]})
    stamp = now_utc()
    nothing = pd.Series(float("nan"), index=frame.index)
    rows = [
        {"day": day, "counter": c, "timestamp": ts, "prediction": float(p),
         "lower": _num(low), "upper": _num(high),
         "model_type": model_type, "model_version": int(v), "predicted_at": stamp}
        for c, ts, p, low, high, v in zip(
            frame["counter"].astype(str), to_utc_naive(frame["timestamp"]),
            frame["prediction"], frame.get("lower", nothing), frame.get("upper", nothing),
            frame["model_version"], strict=True,
        )
    ]  # fmt: skip
    with transaction(engine) as conn:
        conn.execute(
            delete(predictions).where(
                predictions.c.day == day,
                predictions.c.model_type == model_type,
                predictions.c.model_version.in_(versions),
            )
        )
        if rows:
            conn.execute(insert(predictions), rows)
    return len(rows)


def read_predictions(engine: Engine, day: date, model_type: str) -> pd.DataFrame:
    """A day's stored predictions of one model type, every version, Paris time, with their
    interval (lower, upper; NaN for none)."""
    query = (
        select(
            predictions.c.counter, predictions.c.timestamp,
            predictions.c.prediction, predictions.c.model_version,
            predictions.c.lower, predictions.c.upper,
        )
        .where(predictions.c.day == day, predictions.c.model_type == model_type)
        .order_by(predictions.c.model_version, predictions.c.timestamp, predictions.c.counter)
    )  # fmt: skip
    with reading(engine) as conn:
        frame = pd.DataFrame(
            conn.execute(query).mappings().all(), columns=list(query.selected_columns.keys())
        )
    frame["timestamp"] = to_paris(frame["timestamp"])
    frame[["lower", "upper"]] = frame[["lower", "upper"]].astype(float)
    return frame


def replace_daily_error(
    engine: Engine, day: date, model_type: str, version: int, errors: dict[str, float]
) -> None:
    """Store (or replace) one version's RMSE, MAE and row count for one day."""
    with transaction(engine) as conn:
        conn.execute(
            delete(daily_errors).where(
                daily_errors.c.day == day,
                daily_errors.c.model_type == model_type,
                daily_errors.c.model_version == version,
            )
        )
        conn.execute(
            insert(daily_errors),
            {"day": day, "model_type": model_type, "model_version": version,
             "rmse": errors["rmse"], "mae": errors["mae"], "n": int(errors["n"]),
             "computed_at": now_utc()},
        )  # fmt: skip


def replace_day_health(engine: Engine, day: date, counters: Sequence[CounterHealth]) -> int:
    """Store each counter's health on ``day``, replacing the day's earlier check whole.

    Returns:
        The number of rows written.
    """
    stamp = now_utc()
    rows = [
        {"day": day, "counter": health.counter, "status": health.status,
         "since": _utc_naive(health.since), "expected": health.expected,
         "observed": health.observed, "lower": health.lower, "upper": health.upper,
         "hours": list(health.hours), "reason": health.reason, "checked_at": stamp}
        for health in counters
    ]  # fmt: skip
    with transaction(engine) as conn:
        conn.execute(delete(counter_health).where(counter_health.c.day == day))
        if rows:
            conn.execute(insert(counter_health), rows)
    return len(rows)


def _utc_naive(stamp: pd.Timestamp | None) -> datetime | None:
    if stamp is None:
        return None
    return stamp.tz_convert("UTC").tz_localize(None).to_pydatetime()


def read_health(engine: Engine, day: date) -> pd.DataFrame:
    """A day's stored counter health (columns as the table's, ``since`` in Paris time)."""
    query = select(counter_health).where(counter_health.c.day == day)
    with reading(engine) as conn:
        frame = pd.DataFrame(
            conn.execute(query.order_by(counter_health.c.counter)).mappings().all(),
            columns=[c.name for c in counter_health.columns],
        )
    frame["since"] = to_paris(frame["since"])
    return frame


def write_audit(engine: Engine, row: Mapping[str, object]) -> int:
    """Append one audit row (a monitor-and-retrain decision); return its id."""
    values = {"run_at": now_utc(), **row}
    with transaction(engine) as conn:
        result = conn.execute(insert(audit), values)
    key = result.inserted_primary_key
    assert key is not None, "an insert returns its primary key"
    return int(key[0])


def read_table(engine: Engine, table: Table) -> pd.DataFrame:
    """A whole table as a frame (small tables: the audit, logs, tests)."""
    with reading(engine) as conn:
        result = conn.execute(select(table).order_by(table.c.id))
        return pd.DataFrame(result.mappings().all(), columns=[c.name for c in table.columns])
