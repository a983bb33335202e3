"""The pipeline store's engine: opening a store (tables created, older stores given their new
columns), how long a statement waits for another writer's lock, the machine's faults said as
such, and the transactions and reads the store's tables go through (:mod:`.store`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from bikecount.config import Settings
from bikecount.faults import database_fault
from bikecount.pipeline.store_schema import ADDED_COLUMNS, metadata

logger = logging.getLogger(__name__)

# The engine's execution option holding open_store()'s busy timeout, in seconds.
BUSY_TIMEOUT_OPTION = "bikecount_busy_timeout_seconds"
# PostgreSQL: a write's statement_timeout, in busy timeouts.
STATEMENT_TIMEOUT_FACTOR = 2


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
def transaction(engine: Engine) -> Iterator[Connection]:
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
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection to read with, the machine's faults said as such."""
    with _store_faults(engine), engine.connect() as conn:
        yield conn


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
