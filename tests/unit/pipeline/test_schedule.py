"""The orchestrator's context reduced to plain values: the day a run works on, the tasks'
retries as the settings and the DAG files read them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from bikecount.config import Settings
from bikecount.pipeline.schedule import TaskRetries, dag_arguments, run_day, task_defaults


def test_a_run_works_on_the_given_day_else_the_paris_day_before_it_was_due() -> None:
    due = datetime(2021, 3, 10, 23, 0, tzinfo=UTC)  # midnight of 11 March in Paris
    assert run_day(None, due, due) == date(2021, 3, 10)
    assert run_day(None, None, due) == date(2021, 3, 10)  # runs without a logical date
    assert run_day("2020-01-31", due, due) == date(2020, 1, 31)
    with pytest.raises(ValueError, match="'31/01/2020': expected a date as YYYY-MM-DD"):
        run_day("31/01/2020", due, due)


def test_task_defaults_follow_the_settings() -> None:
    defaults = task_defaults(
        Settings(_env_file=None, pipeline_retries=4, pipeline_retry_delay_seconds=30)
    )
    assert defaults["retries"] == 4 and defaults["retry_delay"].total_seconds() == 30


def test_a_dag_file_reads_its_retries_with_the_rules_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BIKECOUNT_PIPELINE_RETRIES", "5")
    monkeypatch.setenv("BIKECOUNT_ENV", "prod")  # settings a task would refuse: not read here
    defaults = dag_arguments(TaskRetries(_env_file=None))["default_args"]
    assert defaults["retries"] == 5 and defaults["retry_delay"].total_seconds() == 300
    monkeypatch.setenv("BIKECOUNT_PIPELINE_RETRIES", "-1")
    with pytest.raises(ValidationError, match="pipeline_retries"):
        TaskRetries(_env_file=None)
