"""What a scheduled run works on, how its tasks retry and read their settings: shared by the
DAGs, without Airflow.

A daily run due at midnight (Paris) works on the day that has just ended; a run given a day
(``{"day": "2021-06-01"}`` as its configuration, or a backfill) works on that day instead.
Parsing a DAG file reads only the retries (:class:`TaskRetries`); each task reads the settings
when it runs (:func:`task_settings`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from pydantic_settings import BaseSettings

from bikecount.config import Settings
from bikecount.faults import as_machine_fault
from bikecount.records import PARIS_TZ

logger = logging.getLogger(__name__)


def run_day(given: str | None, logical_date: datetime | None, run_after: datetime) -> date:
    """The local day a run works on: ``given``, else the Paris day before the run was due.

    Raises:
        ValueError: ``given`` is not a YYYY-MM-DD date.
    """
    if given:
        try:
            return date.fromisoformat(given)
        except ValueError as exc:
            raise ValueError(f"day {given!r}: expected a date as YYYY-MM-DD") from exc
    due = logical_date or run_after
    return due.astimezone(ZoneInfo(PARIS_TZ)).date() - timedelta(days=1)


def context_day(context: Mapping[str, Any]) -> date:
    """:func:`run_day` of an Airflow task's context.

    A run triggered by hand (UI, REST API) may have no logical date: the key is then absent.
    The context's values are Airflow's own objects (not installed here): typed loosely.
    """
    return run_day(
        context["params"].get("day"), context.get("logical_date"), context["dag_run"].run_after
    )


# Before any data the DAGs will be asked about; runs are never caught up (catchup=False).
START_DATE = datetime(2018, 1, 1, tzinfo=ZoneInfo(PARIS_TZ))


def _field_of_settings(name: str) -> Any:
    # Typed Any: a field of Settings, given as the default of another model's field, is that
    # field (pydantic reads it as Field(...)), which mypy cannot know.
    return Settings.model_fields[name]


class TaskRetries(BaseSettings):
    """The settings Airflow needs when it parses a DAG file: its tasks' retries.

    Read alone so that parsing, which Airflow repeats often, builds no :class:`Settings` (the
    tasks build theirs when they run). The fields are Settings' own: the same variables,
    defaults and limits.
    """

    model_config = Settings.model_config

    pipeline_retries: int = _field_of_settings("pipeline_retries")
    pipeline_retry_delay_seconds: float = _field_of_settings("pipeline_retry_delay_seconds")


class TaskDefaults(TypedDict):
    """Airflow's ``default_args`` of every bikecount task."""

    owner: str
    retries: int
    retry_delay: timedelta


class DagArguments(TypedDict):
    """The arguments every bikecount ``DAG`` shares."""

    start_date: datetime
    catchup: bool
    default_args: TaskDefaults
    tags: list[str]


def dag_arguments(retries: TaskRetries | None = None) -> DagArguments:
    """What every bikecount DAG shares: the start in Paris time (schedules follow its time
    zone), no catching up, the task retries (default: read from the environment), the tag."""
    return {
        "start_date": START_DATE,
        "catchup": False,
        "default_args": task_defaults(retries or TaskRetries()),
        "tags": ["bikecount"],
    }


def task_defaults(settings: Settings | TaskRetries) -> TaskDefaults:
    """Airflow ``default_args``: retries for the API restarting or Open Data being late."""
    return {
        "owner": "bikecount",
        "retries": settings.pipeline_retries,
        "retry_delay": timedelta(seconds=settings.pipeline_retry_delay_seconds),
    }


def task_settings() -> Settings:
    """The settings of a task, read as it starts, with MLflow's client bounded by them.

    A task runs in a process of its own: its start is the one place to write the environment
    (see :func:`~bikecount.registry.bound_mlflow_requests`).
    """
    from bikecount.registry import bound_mlflow_requests  # MLflow: not when DAGs are parsed

    settings = Settings()
    bound_mlflow_requests(settings)
    return settings


@contextmanager
def saying_faults() -> Iterator[None]:
    """Around a task's work: a fault of the machine (a store busy, a disk full or read-only)
    fails the task with the line the command line says, logged with its hint.

    A raw ``OSError`` of a full disk leaves as its :class:`~bikecount.faults.StorageError`,
    so that the task's failure reads the same as ``bikecount pipeline ...``'s.
    """
    try:
        yield
    except Exception as exc:
        fault = as_machine_fault(exc)
        if fault is None:
            raise
        logger.error("%s", fault.message)
        logger.error("hint: %s", fault.hint)
        if fault is exc:
            raise
        raise fault from exc
