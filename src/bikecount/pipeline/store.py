"""The pipeline's store: raw counts by day, ingest log, predictions, daily errors, the audit and
counter health.

SQLAlchemy Core over any URL (SQLite by default, PostgreSQL in production). Timestamps are stored
as naive UTC (SQLite keeps no offset); the local Paris ``day`` is the partition key that ingest
and prediction replace as a whole, inside one transaction, so a re-run never duplicates a day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from bikecount.config import Settings
from bikecount.faults import database_fault
from bikecount.health import CounterHealth
from bikecount.pipeline.store_schema import (
    ADDED_COLUMNS,
    audit,
    counter_health,
    daily_errors,
    ingest_log,
    metadata,
    predictions,
    raw_counts,
)
from bikecount.records import PARIS_TZ

logger = logging.getLogger(__name__)

# The engine's execution option holding open_store()'s busy timeout, in seconds.
BUSY_TIMEOUT_OPTION = "bikecount_busy_timeout_seconds"
# PostgreSQL: a write's statement_timeout, in busy timeouts.
STATEMENT_TIMEOUT_FACTOR = 2


def now_utc() -> datetime:
    """The current time as naive UTC, the store's convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def open_store(url: str, busy_timeout_seconds: float | None = None) -> Engine:
    """An engine on ``url`` with every table created (creating is a no-op when they exist).

    Args:
        url: any SQLAlchemy URL.
        busy_timeout_seconds: how long a statement waits for another writer's lock before it
            is refused with :class:`~bikecount.faults.StoreBusyError` (default: the setting
            BIKECOUNT_STORE_BUSY_TIMEOUT_SECONDS's default).
    """
    if busy_timeout_seconds is None:
        busy_timeout_seconds = float(Settings.model_fields["store_busy_timeout_seconds"].default)
    engine = create_engine(
        url,
        connect_args=busy_timeout_args(make_url(url), busy_timeout_seconds),
        execution_options={BUSY_TIMEOUT_OPTION: busy_timeout_seconds},
    )
    with _store_faults(engine):
        metadata.create_all(engine)
        add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> None:
    """Add to an older store the nullable columns of ``ADDED_COLUMNS`` it lacks."""
    inspector = inspect(engine)
    for table_name, names in ADDED_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table_name)}
        table = metadata.tables[table_name]
        for name in names:
            if name in present:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=engine.dialect)
            preparer = engine.dialect.identifier_preparer
            try:
                with engine.begin() as conn:
                    conn.execute(
                        text(
                            f"ALTER TABLE {preparer.quote(table_name)} "
                            f"ADD COLUMN {preparer.quote(name)} {kind}"
                        )
                    )
            except DBAPIError:
                # Another process opening the store at the same moment may have added it.
                columns = inspect(engine).get_columns(table_name)
                if name not in {c["name"] for c in columns}:
                    raise
            logger.info("added column %s.%s to %s", table_name, name, shown_store(engine))


def open_pipeline_store(settings: Settings) -> Engine:
    """The pipeline store of ``settings``, waiting for locks as long as they allow."""
    return open_store(settings.pipeline_db_url, settings.store_busy_timeout_seconds)


def busy_timeout_args(url: URL, seconds: float) -> dict[str, Any]:
    """The driver's arguments that bound the wait for a lock to ``seconds``.

    SQLite (pysqlite) waits ``timeout`` seconds for a lock, 5 by default. PostgreSQL waits
    forever by default: its ``lock_timeout`` bounds each wait for a lock, set for the session.
    """
    if url.get_backend_name() == "sqlite":
        return {"timeout": seconds}
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        return {"options": f"-c lock_timeout={_milliseconds(seconds)}"}
    return {}


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def shown_store(engine: Engine) -> str:
    """The store as messages show it: its URL without the password."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _store_faults(engine: Engine) -> Iterator[None]:
    """Turn the driver's errors that are the machine's (a lock held too long, a full or
    read-only disk) into :class:`~bikecount.faults.MachineFault` naming the store."""
    started = time.monotonic()
    try:
        yield
    except DBAPIError as exc:
        waited = time.monotonic() - started
        fault = None
        if exc.orig is not None:
            fault = database_fault(
                exc.orig, shown_store(engine), waited, _database_file(engine), "pipeline store"
            )
        if fault is None:
            raise
        raise fault from exc


def _database_file(engine: Engine) -> str | None:
    """SQLite's file, what a full or read-only disk is about (None: a server's database)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return database


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction (committed at the end, rolled back on error, so a refused write leaves
    the store as it was); on PostgreSQL its statements are bounded like its locks."""
    with _store_faults(engine), engine.begin() as conn:
        seconds = conn.get_execution_options().get(BUSY_TIMEOUT_OPTION)
        if conn.dialect.name == "postgresql" and seconds is not None:
            # A write stuck on anything, not only a lock, is cancelled (57014); twice the lock
            # wait, so that a lock held too long is said as such (55P03). Reads are left
            # unbounded: reading every stored day for a retraining may rightly take long.
            timeout = _milliseconds(STATEMENT_TIMEOUT_FACTOR * seconds)
            conn.execute(text(f"SET LOCAL statement_timeout = {timeout}"))
        yield conn


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    with _store_faults(engine), engine.connect() as conn:
        yield conn


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
    with _transaction(engine) as conn:
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
    with _transaction(engine) as conn:
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
    with _reading(engine) as conn:
        frame = pd.DataFrame(
            conn.execute(query).mappings().all(), columns=list(query.selected_columns.keys())
        )
    frame["timestamp"] = to_paris(frame["timestamp"])
    frame["count"] = frame["count"].astype(float)
    return frame


def last_day(engine: Engine) -> date | None:
    """The latest day with stored raw counts, None when there are none."""
    with _reading(engine) as conn:
        return conn.execute(select(func.max(raw_counts.c.day))).scalar_one_or_none()


def ingested_days(engine: Engine, first_day: date, last_day: date) -> set[date]:
    """The days between two days (inclusive) that have stored raw counts."""
    query = (
        select(raw_counts.c.day)
        .where(raw_counts.c.day >= first_day, raw_counts.c.day <= last_day)
        .distinct()
    )
    with _reading(engine) as conn:
        return set(conn.execute(query).scalars())


def known_counters(engine: Engine) -> pd.DataFrame:
    """Every counter of the raw counts, with its coordinates as last stored."""
    latest = select(raw_counts.c.counter, raw_counts.c.lat, raw_counts.c.lon).order_by(
        raw_counts.c.timestamp
    )
    with _reading(engine) as conn:
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
    with _transaction(engine) as conn:
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
    with _reading(engine) as conn:
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
    with _transaction(engine) as conn:
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
    with _transaction(engine) as conn:
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
    with _reading(engine) as conn:
        frame = pd.DataFrame(
            conn.execute(query.order_by(counter_health.c.counter)).mappings().all(),
            columns=[c.name for c in counter_health.columns],
        )
    frame["since"] = to_paris(frame["since"])
    return frame


def write_audit(engine: Engine, row: Mapping[str, object]) -> int:
    """Append one audit row (a monitor-and-retrain decision); return its id."""
    values = {"run_at": now_utc(), **row}
    with _transaction(engine) as conn:
        result = conn.execute(insert(audit), values)
    key = result.inserted_primary_key
    assert key is not None, "an insert returns its primary key"
    return int(key[0])


def read_table(engine: Engine, table: Table) -> pd.DataFrame:
    """A whole table as a frame (small tables: the audit, logs, tests)."""
    with _reading(engine) as conn:
        result = conn.execute(select(table).order_by(table.c.id))
        return pd.DataFrame(result.mappings().all(), columns=[c.name for c in table.columns])


def absolute_database_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (other databases are left as they are).

    Airflow runs tasks in processes of its own: a path relative to where the stack started
    must not depend on where they run.
    """
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return url
    database = str(Path(parsed.database).resolve())
    return parsed.set(database=database).render_as_string(hide_password=False)
