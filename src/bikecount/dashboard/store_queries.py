"""What the dashboard reads from the pipeline store: bounded queries, one job each.

Every query is bounded by days and, where it lists hours, by one counter: a view never loads the
whole store. The store is only read here (no table is created: a missing table is an empty store).
Timestamps come back in Europe/Paris local time, as the rest of bikecount shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, and_, func, inspect, select

from bikecount.health.report import UNKNOWN
from bikecount.pipeline.store import to_paris
from bikecount.pipeline.store_schema import (
    audit,
    counter_health,
    daily_errors,
    predictions,
    raw_counts,
)

# The most audit rows a view shows (newest first); the audit grows by one row a week.
AUDIT_LIMIT = 200


@dataclass(frozen=True)
class StoreSummary:
    """What the store holds, in a few numbers: enough to choose the days every page shows.

    Attributes:
        last_count_day: the latest day with raw counts (None: no count stored).
        last_forecast_day: the latest day with stored predictions (None: none).
        counters: counters with counts on ``last_count_day``.
    """

    last_count_day: date | None
    last_forecast_day: date | None
    counters: int

    @property
    def empty(self) -> bool:
        return self.last_count_day is None

    @property
    def coming_day(self) -> date | None:
        """The day after the last counted one: the day a day-ahead forecast is for."""
        return None if self.last_count_day is None else self.last_count_day + timedelta(days=1)

    def filled(self) -> FilledStore | None:
        """The same summary with its days known, or None for an empty store."""
        if self.last_count_day is None:
            return None
        return FilledStore(self.last_count_day, self.last_forecast_day, self.counters)


@dataclass(frozen=True)
class FilledStore:
    """The summary of a store that holds counts: its last counted day is known."""

    last_count_day: date
    last_forecast_day: date | None
    counters: int

    @property
    def coming_day(self) -> date:
        """The day after the last counted one: the day a day-ahead forecast is for."""
        return self.last_count_day + timedelta(days=1)


def has_store_tables(engine: Engine) -> bool:
    """Whether the pipeline's tables exist (a store nothing was ever written to has none)."""
    return inspect(engine).has_table(raw_counts.name)


def read_summary(engine: Engine) -> StoreSummary:
    """The last counted and forecast days and the number of counters of the last counted day."""
    if not has_store_tables(engine):
        return StoreSummary(None, None, 0)
    with engine.connect() as conn:
        last_count = conn.execute(select(func.max(raw_counts.c.day))).scalar_one_or_none()
        last_forecast = conn.execute(select(func.max(predictions.c.day))).scalar_one_or_none()
        counters = 0
        if last_count is not None:
            query = select(func.count(func.distinct(raw_counts.c.counter))).where(
                raw_counts.c.day == last_count
            )
            counters = int(conn.execute(query).scalar_one())
    return StoreSummary(last_count, last_forecast, counters)


def read_counters(engine: Engine, day: date) -> pd.DataFrame:
    """The counters counted on ``day`` with their coordinates (columns counter, lat, lon)."""
    query = (
        select(raw_counts.c.counter, func.max(raw_counts.c.lat), func.max(raw_counts.c.lon))
        .where(raw_counts.c.day == day)
        .group_by(raw_counts.c.counter)
        .order_by(raw_counts.c.counter)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["counter", "lat", "lon"])


def latest_version(engine: Engine, day: date, model_type: str) -> int | None:
    """The newest model version with predictions for ``day`` (the one the map shows)."""
    query = select(func.max(predictions.c.model_version)).where(
        predictions.c.day == day, predictions.c.model_type == model_type
    )
    with engine.connect() as conn:
        version = conn.execute(query).scalar_one_or_none()
    return None if version is None else int(version)


def read_day_totals(engine: Engine, day: date, model_type: str) -> pd.DataFrame:
    """Per counter, the newest version's forecast of ``day``: total, peak hour and its value.

    Returns:
        Columns counter, forecast_total, peak_forecast, model_version (empty: no forecast).
    """
    version = latest_version(engine, day, model_type)
    columns = ["counter", "forecast_total", "peak_forecast", "model_version"]
    if version is None:
        return pd.DataFrame(columns=columns)
    query = (
        select(
            predictions.c.counter,
            func.sum(predictions.c.prediction),
            func.max(predictions.c.prediction),
        )
        .where(
            predictions.c.day == day,
            predictions.c.model_type == model_type,
            predictions.c.model_version == version,
        )
        .group_by(predictions.c.counter)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=columns[:3])
    frame["model_version"] = version
    return frame


def read_day_errors_by_counter(engine: Engine, day: date, model_type: str) -> pd.DataFrame:
    """Per counter, the mean absolute error of the newest version's forecast of a counted day.

    Returns:
        Columns counter, counted_total, mae (empty: the day has no forecast or no counts).
    """
    version = latest_version(engine, day, model_type)
    columns = ["counter", "counted_total", "mae"]
    if version is None:
        return pd.DataFrame(columns=columns)
    joined = and_(
        predictions.c.counter == raw_counts.c.counter,
        predictions.c.timestamp == raw_counts.c.timestamp,
    )
    query = (
        select(
            raw_counts.c.counter,
            func.sum(raw_counts.c["count"]),
            func.avg(func.abs(predictions.c.prediction - raw_counts.c["count"])),
        )
        .join(predictions, joined)
        .where(
            raw_counts.c.day == day,
            raw_counts.c["count"].is_not(None),
            predictions.c.model_type == model_type,
            predictions.c.model_version == version,
        )
        .group_by(raw_counts.c.counter)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=columns)


HEALTH_COLUMNS = ["counter", "health", "health_since", "health_reason", "health_day"]


def read_latest_health(engine: Engine, last_day: date) -> pd.DataFrame:
    """Each counter's status on the latest day checked up to ``last_day`` (a store written
    before the health check existed has no table: no row).

    Returns:
        Columns counter, health (the status), health_since (Paris time), health_reason,
        health_day.
    """
    if not inspect(engine).has_table(counter_health.name):
        return pd.DataFrame(columns=HEALTH_COLUMNS)
    latest = (
        select(func.max(counter_health.c.day))
        .where(counter_health.c.day <= last_day)
        .scalar_subquery()
    )
    query = select(
        counter_health.c.counter, counter_health.c.status, counter_health.c.since,
        counter_health.c.reason, counter_health.c.day,
    ).where(counter_health.c.day == latest)  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=HEALTH_COLUMNS)
    frame["health_since"] = to_paris(frame["health_since"])
    return frame


def read_map_frame(engine: Engine, summary: StoreSummary, model_type: str) -> pd.DataFrame:
    """Every counter of the last counted day with its coming-day forecast, last-day error and
    latest stored health.

    Returns:
        Columns counter, lat, lon, forecast_total, peak_forecast, mae, counted_total (NaN where
        a forecast or an error is missing), and those of :func:`read_latest_health` (health
        ``unknown`` for a counter never checked).
    """
    filled = summary.filled()
    if filled is None:
        return pd.DataFrame(columns=["counter", "lat", "lon"])
    counters = read_counters(engine, filled.last_count_day)
    frame = counters.merge(
        read_day_totals(engine, filled.coming_day, model_type).drop(columns="model_version"),
        on="counter",
        how="left",
    )
    errors = read_day_errors_by_counter(engine, filled.last_count_day, model_type)
    frame = frame.merge(errors, on="counter", how="left")
    for column in ("forecast_total", "peak_forecast", "mae", "counted_total"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    health = read_latest_health(engine, filled.last_count_day)
    frame = frame.merge(health, on="counter", how="left")
    frame["health"] = frame["health"].fillna(UNKNOWN)
    return frame


def read_counter_counts(
    engine: Engine, counter: str, first_day: date, last_day: date
) -> pd.DataFrame:
    """One counter's stored counts between two days (inclusive): columns day, timestamp, count."""
    query = (
        select(raw_counts.c.day, raw_counts.c.timestamp, raw_counts.c["count"])
        .where(
            raw_counts.c.counter == counter,
            raw_counts.c.day >= first_day,
            raw_counts.c.day <= last_day,
        )
        .order_by(raw_counts.c.timestamp)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=["day", "timestamp", "count"])
    frame["timestamp"] = to_paris(frame["timestamp"])
    frame["count"] = frame["count"].astype(float)
    return frame


def read_counter_forecasts(
    engine: Engine, counter: str, first_day: date, last_day: date, model_type: str
) -> pd.DataFrame:
    """One counter's stored forecasts between two days, every version.

    Returns:
        Columns day, timestamp, prediction, lower, upper (the interval; NaN where none was
        stored, or the store predates intervals), model_version, ordered by version then time.
    """
    stored = {column["name"] for column in inspect(engine).get_columns(predictions.name)}
    bounds = [predictions.c[name] for name in ("lower", "upper") if name in stored]
    query = (
        select(
            predictions.c.day,
            predictions.c.timestamp,
            predictions.c.prediction,
            predictions.c.model_version,
            *bounds,
        )
        .where(
            predictions.c.counter == counter,
            predictions.c.model_type == model_type,
            predictions.c.day >= first_day,
            predictions.c.day <= last_day,
        )
        .order_by(predictions.c.model_version, predictions.c.timestamp)
    )
    columns = ["day", "timestamp", "prediction", "model_version"] + [c.name for c in bounds]
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
    frame["timestamp"] = to_paris(frame["timestamp"])
    frame["model_version"] = frame["model_version"].astype(int)
    for name in ("lower", "upper"):
        frame[name] = frame[name].astype(float) if name in frame else float("nan")
    return frame[["day", "timestamp", "prediction", "lower", "upper", "model_version"]]


def summarise_counter_days(counts: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per day and forecasting version: counted total, forecast total and MAE over counted hours.

    Days with counts but no forecast keep one row with an empty version. Pure: the counter page
    shows this table, and the tests compare it with the store.
    """
    counted = counts.dropna(subset=["count"]).groupby("day")["count"].sum().rename("counted")
    if forecasts.empty:
        frame = counted.reset_index()
        frame["model_version"] = pd.NA
        frame["forecast"] = float("nan")
        frame["mae"] = float("nan")
        return frame[["day", "model_version", "counted", "forecast", "mae"]]
    joined = forecasts.merge(counts[["timestamp", "count"]], on="timestamp", how="left")
    rows = []
    for (day, version), group in joined.groupby(["day", "model_version"]):
        hours = group.dropna(subset=["count"])
        mae = (hours["prediction"] - hours["count"]).abs().mean() if len(hours) else float("nan")
        rows.append(
            {"day": day, "model_version": int(version), "forecast": group["prediction"].sum(),
             "mae": mae}
        )  # fmt: skip
    frame = pd.DataFrame(rows).merge(counted.reset_index(), on="day", how="outer")
    frame = frame.sort_values(["day", "model_version"], na_position="first")
    return frame[["day", "model_version", "counted", "forecast", "mae"]].reset_index(drop=True)


def read_daily_errors(
    engine: Engine, first_day: date, last_day: date, model_type: str
) -> pd.DataFrame:
    """Stored daily RMSE and MAE per model version between two days (columns as the table's)."""
    query = (
        select(
            daily_errors.c.day,
            daily_errors.c.model_version,
            daily_errors.c.rmse,
            daily_errors.c.mae,
            daily_errors.c.n,
        )
        .where(
            daily_errors.c.model_type == model_type,
            daily_errors.c.day >= first_day,
            daily_errors.c.day <= last_day,
        )
        .order_by(daily_errors.c.day, daily_errors.c.model_version)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["day", "model_version", "rmse", "mae", "n"])


def read_audit(engine: Engine, limit: int = AUDIT_LIMIT) -> pd.DataFrame:
    """The newest ``limit`` monitor-and-retrain decisions, newest first."""
    columns = [
        "run_at", "model_type", "forced", "drift_detected", "counts_drifted", "drift_share",
        "champion_version", "retrained", "new_version", "promoted", "reason",
    ]  # fmt: skip
    query = select(*(audit.c[name] for name in columns)).order_by(audit.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=columns)
    if not frame.empty:
        frame["run_at"] = to_paris(frame["run_at"])
    return frame
