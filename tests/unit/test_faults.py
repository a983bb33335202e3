"""Faults of the machine: recognised from raw errors, said in one line with a hint, one exit code
per kind, the same words from the command line, the API and the DAG tasks."""

from __future__ import annotations

import errno
import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikecount.api.errors import describe_error
from bikecount.cli import app
from bikecount.cli.failures import describe_failure, describe_unexpected
from bikecount.faults import (
    INTERNAL_ERROR_EXIT_CODE,
    LOCK_NOT_AVAILABLE,
    PERMISSION_EXIT_CODE,
    QUERY_CANCELED,
    READ_ONLY_EXIT_CODE,
    STORAGE_FULL_EXIT_CODE,
    STORE_BUSY_EXIT_CODE,
    ReadOnlyStorageError,
    StorageFullError,
    StoragePermissionError,
    StoreBusyError,
    as_machine_fault,
    database_fault,
    storage_fault,
    tracking_store_busy,
)
from bikecount.pipeline.schedule import saying_faults
from bikecount.pipeline.store import read_counts, replace_day_counts
from bikecount.pipeline.store_engine import busy_timeout_args, open_store

DAY = date(2021, 6, 2)


class PgError(Exception):
    """What psycopg raises: its SQLSTATE on ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


class MlflowLike(Exception):
    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


def test_each_kind_of_fault_has_its_own_exit_code() -> None:
    codes = [
        StoreBusyError("sqlite:///x.db", 1.0).exit_code,
        StorageFullError("/a").exit_code,
        ReadOnlyStorageError("/a").exit_code,
        StoragePermissionError("/a").exit_code,
        INTERNAL_ERROR_EXIT_CODE,
    ]
    assert codes == [
        STORE_BUSY_EXIT_CODE, STORAGE_FULL_EXIT_CODE, READ_ONLY_EXIT_CODE, PERMISSION_EXIT_CODE, 70,
    ]  # fmt: skip
    assert len(set(codes)) == len(codes)
    assert not {1, 2, 130} & set(codes)  # the codes already in use


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, StorageFullError),
        (errno.EROFS, ReadOnlyStorageError),
        (errno.EACCES, StoragePermissionError),
    ],
)
def test_an_os_error_of_a_disk_is_a_storage_fault_naming_the_destination(
    code: int, kind: type
) -> None:
    # A copy names its source first, then the destination that could not be written.
    exc = OSError(code, "fails", "/tmp/src/model.pkl", None, "/art/models/m-1/model.pkl")
    fault = storage_fault(exc, doing="logging the model", setting="BIKECOUNT_ARTIFACTS_DIR")
    assert isinstance(fault, kind)
    assert fault.message.startswith("/art/models/m-1/model.pkl: ")
    assert "while logging the model" in fault.message
    assert "BIKECOUNT_ARTIFACTS_DIR" in fault.hint
    assert "\n" not in fault.message


def test_a_write_naming_no_file_is_said_with_the_folder_given() -> None:
    fault = storage_fault(OSError(errno.ENOSPC, "No space left on device"), "/reports")
    assert fault is not None and fault.path == "/reports"


def test_other_os_errors_are_not_faults_of_the_machine() -> None:
    assert storage_fault(FileNotFoundError(errno.ENOENT, "missing", "/x")) is None
    assert as_machine_fault(ValueError("bad value")) is None


def test_a_fault_is_found_through_the_chain_of_causes() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/art/model.pkl")
        except OSError as inner:
            raise RuntimeError("MLflow could not log") from inner
    except RuntimeError as outer:
        fault = as_machine_fault(outer)
    assert isinstance(fault, StorageFullError)
    assert fault.path == "/art/model.pkl"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (PgError(LOCK_NOT_AVAILABLE), StoreBusyError),
        (PgError(QUERY_CANCELED), StoreBusyError),
        (sqlite3.OperationalError("database is locked"), StoreBusyError),
        (sqlite3.OperationalError("database or disk is full"), StorageFullError),
        (sqlite3.OperationalError("attempt to write a readonly database"), ReadOnlyStorageError),
    ],
)
def test_database_errors_of_the_machine_are_recognised(error: Exception, kind: type) -> None:
    fault = database_fault(error, "sqlite:////srv/p.db", 10.2, "/srv/p.db", "pipeline store")
    assert isinstance(fault, kind)
    where = "sqlite:////srv/p.db" if kind is StoreBusyError else "/srv/p.db"
    assert where in fault.message


def test_a_database_error_of_the_input_is_not_a_fault() -> None:
    error = sqlite3.IntegrityError("UNIQUE constraint failed")
    assert database_fault(error, "sqlite:///p.db", 0.0) is None


def test_a_busy_store_says_how_long_it_waited_and_what_to_do() -> None:
    fault = StoreBusyError("sqlite:////srv/p.db", 10.04, what="pipeline store")
    assert fault.message == (
        "the pipeline store sqlite:////srv/p.db is busy (locked by another writer): "
        "gave up after 10 s; nothing was written"
    )
    assert "BIKECOUNT_STORE_BUSY_TIMEOUT_SECONDS" in fault.hint


def test_mlflow_busy_store_is_named() -> None:
    error = MlflowLike("(sqlite3.OperationalError) database is locked", "TEMPORARILY_UNAVAILABLE")
    fault = tracking_store_busy(error, "sqlite:////srv/mlflow.db")
    assert fault is not None and "MLflow tracking store sqlite:////srv/mlflow.db" in fault.message
    assert tracking_store_busy(MlflowLike("locked", "BAD_REQUEST"), "x") is None


def test_busy_timeout_reaches_the_driver() -> None:
    from sqlalchemy.engine import make_url

    assert busy_timeout_args(make_url("sqlite:///p.db"), 2.5) == {"timeout": 2.5}
    pg = busy_timeout_args(make_url("postgresql+psycopg://u@h/db"), 2.5)
    assert pg == {"options": "-c lock_timeout=2500"}
    assert busy_timeout_args(make_url("mysql://u@h/db"), 2.5) == {}


def test_a_store_locked_by_another_connection_refuses_in_time_and_keeps_the_day(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = open_store(url, busy_timeout_seconds=0.2)
    frame = pd.DataFrame(
        {
            "counter": ["a"],
            "timestamp": pd.to_datetime(["2021-06-02 08:00"]).tz_localize("Europe/Paris"),
            "lat": [48.8],
            "lon": [2.3],
            "count": [12.0],
        }
    )
    replace_day_counts(engine, DAY, frame)
    holder = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreBusyError) as caught:
            replace_day_counts(engine, DAY, frame.assign(count=99.0))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(tmp_path / "p.db") in caught.value.message
    assert caught.value.waited < 5
    assert read_counts(engine, DAY, DAY)["count"].tolist() == [12.0]


def test_the_command_line_says_a_fault_in_one_line_with_its_exit_code() -> None:
    failure = describe_failure(OSError(errno.EROFS, "Read-only file system", "/data/x.csv"))
    assert failure is not None
    assert failure.exit_code == READ_ONLY_EXIT_CODE
    assert failure.message == "/data/x.csv: the filesystem is read-only"


def test_an_unexpected_error_is_one_line_pointing_to_verbose() -> None:
    failure = describe_unexpected(KeyError("boom\nwith SQL on the next line"))
    assert failure.exit_code == INTERNAL_ERROR_EXIT_CODE
    assert "\n" not in failure.message
    assert "--verbose" in (failure.hint or "")


def test_an_error_no_command_handled_ends_in_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bikecount.pipeline.ingest as ingest_module

    def full_disk(*args: object, **kwargs: object) -> None:
        raise StorageFullError(str(tmp_path / "pipeline.db"), "writing to the pipeline store")

    monkeypatch.setattr(ingest_module, "ingest_day", full_disk)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["pipeline", "ingest", "--date", "2021-06-02"])
    assert result.exit_code == STORAGE_FULL_EXIT_CODE
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        f"error: {tmp_path / 'pipeline.db'}: no space left on its device while writing to the "
        "pipeline store"
    )
    assert lines[1].startswith("hint: free space")


def test_a_bug_ends_in_one_line_with_exit_code_70(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bikecount.pipeline.ingest as ingest_module

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("counter")

    monkeypatch.setattr(ingest_module, "ingest_day", bug)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["pipeline", "ingest", "--date", "2021-06-02"])
    assert result.exit_code == INTERNAL_ERROR_EXIT_CODE
    assert "Traceback" not in result.output
    assert result.output.startswith("error: unexpected KeyError: 'counter'\n")


def test_the_api_answers_a_fault_with_a_503_in_the_same_words() -> None:
    fault = StoreBusyError("sqlite:////srv/p.db", 10.0, what="pipeline store")
    assert describe_error(fault) == (503, fault.message)
    raw = OSError(errno.ENOSPC, "No space left on device", "/art/m/model.pkl")
    assert describe_error(raw) == (503, "/art/m/model.pkl: no space left on its device")


def test_a_dag_task_fails_with_the_same_line_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    raw = OSError(errno.ENOSPC, "No space left on device", "/data/current.csv")
    with pytest.raises(StorageFullError) as caught, saying_faults():
        raise raw
    assert str(caught.value) == "/data/current.csv: no space left on its device"
    assert caught.value.__cause__ is raw
    assert "/data/current.csv: no space left on its device" in caplog.text
    with pytest.raises(ValueError), saying_faults():
        raise ValueError("not a fault: raised as it is")
