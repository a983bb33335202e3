"""Faults of the machine made for real (issue 22): a store locked by a second process, a full
artifact disk (a small tmpfs), a read-only folder (a tmpfs remounted read-only), a PostgreSQL
lock held past ``lock_timeout``.

Each ends in one line naming where, the exit code of its kind, no traceback, and nothing stored
changed. Mounting needs root (CAP_SYS_ADMIN): where it is refused, those tests skip and say so;
the CI runs them as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from postgres_server import postgres_bin, running_postgres
from servers import REGMODEL_APP, api_env, running, start_api, write_test_data

from bikecount.config import Settings
from bikecount.data.io import write_records
from bikecount.faults import (
    READ_ONLY_EXIT_CODE,
    STORAGE_FULL_EXIT_CODE,
    STORE_BUSY_EXIT_CODE,
    StoreBusyError,
)
from bikecount.pipeline.ingest import ingest, rows_of_day, valid_records
from bikecount.pipeline.store import read_counts, replace_day_counts
from bikecount.pipeline.store_engine import open_store
from bikecount.records import COUNT
from bikecount.registry import CHAMPION
from bikecount.run_faults import FAILED_TAG

pytestmark = pytest.mark.integration

BIKECOUNT = Path(sys.executable).parent / "bikecount"
DAY = date(2021, 3, 10)  # inside the session's small synthetic records (tests/conftest.py)
BUSY_TIMEOUT_SECONDS = 2
CLI_TIMEOUT_SECONDS = 240
# A second process holding SQLite's exclusive lock, as a backup job or a second scheduler would:
# it says "locked", then holds the lock until it is killed.
HOLD_LOCK = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def cli(home: Path, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    """``bikecount ARGS`` run from ``home`` (its folders and stores there), as an operator would."""
    # Without MLflow's URI variables: one an earlier test left would win over the home's store.
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
        },
        "BIKECOUNT_ENV": "dev",
        "BIKECOUNT_DATA_DIR": str(home / "data"),
        "BIKECOUNT_MLRUNS_DIR": str(home / "mlruns"),
        "BIKECOUNT_ARTIFACTS_DIR": str(home / "artifacts"),
        "BIKECOUNT_REPORTS_DIR": str(home / "reports"),
        "BIKECOUNT_PIPELINE_DB_URL": f"sqlite:///{home / 'pipeline.db'}",
        "BIKECOUNT_PIPELINE_OPEN_DATA": "false",
    }
    env.update({f"BIKECOUNT_{key.upper()}": str(value) for key, value in settings.items()})
    return subprocess.run(
        [str(BIKECOUNT), *args], cwd=home, env=env, capture_output=True, text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )  # fmt: skip


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said on stderr, with no traceback anywhere."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.stderr.strip().splitlines()


@contextmanager
def holding_lock(database: Path) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on ``database`` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()  # the lock goes with the process, as it would with a crashed backup
        holder.wait(timeout=10)


def mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root: the full and read-only disk tests run as root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:  # a container without CAP_SYS_ADMIN
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")


def unmount(folder: Path) -> None:
    # Lazy: a process of a failed test still in the folder does not keep it mounted.
    subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted whatever the test did."""
    folder = tmp_path / "small_disk"
    mount_tmpfs(folder, "2m")
    try:
        yield folder
    finally:
        unmount(folder)


def remount_read_only(folder: Path) -> None:
    # chmod does not stop root; a read-only mount does.
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill ``folder``'s disk but ``leave_bytes``."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with (folder / "ballast").open("wb") as ballast:
        ballast.write(b"\0" * max(free - leave_bytes, 0))


def store_day(home: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """Ingest DAY from an export file into ``home``'s store; return what is stored of it."""
    write_records(rows_of_day(raw, DAY), home / "before.csv")
    url = f"sqlite:///{home / 'pipeline.db'}"
    ingest(Settings(_env_file=None, pipeline_db_url=url), DAY, home / "before.csv")
    return read_counts(open_store(url), DAY, DAY)


def doubled_day(raw: pd.DataFrame) -> pd.DataFrame:
    """The export rows of DAY with doubled counts: an ingest that would change the stored day."""
    rows = rows_of_day(raw, DAY).copy()
    rows[COUNT] = rows[COUNT] * 2
    return rows


def test_a_locked_store_is_waited_for_then_refused_in_one_line(
    tmp_path: Path, small_raw: pd.DataFrame
) -> None:
    stored = store_day(tmp_path, small_raw)
    write_records(doubled_day(small_raw), tmp_path / "after.csv")
    database = tmp_path / "pipeline.db"
    with holding_lock(database):
        started = time.monotonic()
        result = cli(
            tmp_path, "pipeline", "ingest", "--date", DAY.isoformat(), "--source", "after.csv",
            store_busy_timeout_seconds=BUSY_TIMEOUT_SECONDS,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == STORE_BUSY_EXIT_CODE, result.stderr
    lines = error_lines(result)
    assert lines[0] == (
        f"error: the pipeline store sqlite:///{database} is busy (locked by another writer): "
        f"gave up after {BUSY_TIMEOUT_SECONDS} s; nothing was written"
    )
    assert lines[1].startswith("hint: retry once the other writer")
    assert len(lines) == 2
    assert elapsed < 60  # the wait is the setting's, not minutes
    pd.testing.assert_frame_equal(
        read_counts(open_store(f"sqlite:///{database}"), DAY, DAY), stored
    )


def test_a_read_only_store_and_data_folder_are_said_with_their_path(
    small_disk: Path, small_raw: pd.DataFrame
) -> None:
    home = small_disk.parent
    stored = store_day(home, small_raw)
    write_records(doubled_day(small_raw), home / "after.csv")
    shutil.copy(home / "pipeline.db", small_disk / "pipeline.db")
    remount_read_only(small_disk)
    database = small_disk / "pipeline.db"

    ingested = cli(
        home, "pipeline", "ingest", "--date", DAY.isoformat(), "--source", "after.csv",
        pipeline_db_url=f"sqlite:///{database}",
    )  # fmt: skip
    assert ingested.returncode == READ_ONLY_EXIT_CODE, ingested.stderr
    assert error_lines(ingested)[0] == (
        f"error: {database}: the filesystem is read-only while writing to the pipeline store"
    )
    pd.testing.assert_frame_equal(
        read_counts(open_store(f"sqlite:///{database}"), DAY, DAY), stored
    )

    output = small_disk / "raw.csv"
    generated = cli(
        home, "data", "synth", "--months", "1", "--counters", "2", "--output", str(output)
    )
    assert generated.returncode == READ_ONLY_EXIT_CODE, generated.stderr
    assert error_lines(generated)[0] == f"error: {output}: the filesystem is read-only"
    assert not output.exists()


def test_a_read_only_reports_folder_fails_monitoring_with_its_path(
    small_disk: Path, small_raw: pd.DataFrame
) -> None:
    home = small_disk.parent
    half = len(small_raw) // 2
    write_records(small_raw.iloc[:half], home / "reference.csv")
    write_records(small_raw.iloc[half:], home / "current.csv")
    remount_read_only(small_disk)

    monitored = cli(
        home, "monitor", "--reference", "reference.csv", "--current", "current.csv",
        reports_dir=small_disk,
    )  # fmt: skip
    assert monitored.returncode == READ_ONLY_EXIT_CODE, monitored.stderr
    first = error_lines(monitored)[0]
    assert first.startswith(f"error: {small_disk}/drift_"), first
    assert "the filesystem is read-only while writing the drift report" in first
    assert not list(small_disk.iterdir())  # no partial report


@pytest.mark.slow
def test_a_full_artifact_disk_fails_the_run_and_leaves_nothing_half_written(
    small_disk: Path,
) -> None:
    home = small_disk.parent
    write_test_data(home / "data")
    artifacts = {"artifacts_dir": small_disk}
    first = cli(home, "train", "--model", "rf", "--test-mode", "--json", **artifacts)
    assert first.returncode == 0, first.stderr
    store = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(store, store)  # both: MLflow's global registry URI may name another store
    name = "bikecount-rf"
    assert int(client.get_model_version_by_alias(name, CHAMPION).version) == 1
    before = sorted(path.relative_to(small_disk) for path in small_disk.rglob("*"))
    fill(small_disk, leave_bytes=16 * 1024)  # the model file (about 140 kB) cannot fit

    failed = cli(home, "train", "--model", "rf", "--test-mode", **artifacts)
    assert failed.returncode == STORAGE_FULL_EXIT_CODE, failed.stderr
    lines = error_lines(failed)
    assert lines[0].startswith(f"error: {small_disk}/models/m-")
    assert lines[0].endswith(
        ": no space left on its device while logging the model (run FAILED, its partial "
        "files removed)"
    )
    assert "BIKECOUNT_ARTIFACTS_DIR" in lines[1]
    [version] = client.search_model_versions(f"name = '{name}'")
    assert int(version.version) == 1  # no new version
    assert int(client.get_model_version_by_alias(name, CHAMPION).version) == 1
    experiment = client.get_run(version.run_id).info.experiment_id
    [run] = [r for r in client.search_runs([experiment]) if r.info.run_id != version.run_id]
    assert run.info.status == "FAILED"
    assert run.data.tags[FAILED_TAG] == lines[0].removeprefix("error: ")
    after = sorted(p.relative_to(small_disk) for p in small_disk.rglob("*") if p.name != "ballast")
    assert after == before  # the failed model's folder is gone


@pytest.mark.slow
def test_the_api_answers_503_naming_its_locked_tracking_store(tmp_path: Path) -> None:
    database = tmp_path / "mlruns" / "mlflow.db"
    tracking_uri = f"sqlite:///{database}"
    api = start_api("regmodel", REGMODEL_APP, tmp_path, api_env(tmp_path, tracking_uri))
    with running(api):
        assert httpx.get(f"{api.url}/models", timeout=60).status_code == 200
        with holding_lock(database):
            # MLflow waits 20 s for its SQLite store before it gives up.
            answer = httpx.get(f"{api.url}/models", timeout=90)
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"the MLflow tracking store {tracking_uri} is busy"), detail
    assert answer.headers["Retry-After"] == "10"
    # Answered by the error mapping, not the catch-all (MLflow logs its own traceback).
    assert "on GET /models" not in api.log(), api.log()


@pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL server installed here")
def test_a_postgresql_lock_is_waited_for_then_refused(small_raw: pd.DataFrame) -> None:
    with running_postgres() as url:
        engine = open_store(url, busy_timeout_seconds=1)
        frame, _ = valid_records(rows_of_day(small_raw, DAY))
        replace_day_counts(engine, DAY, frame)
        stored = read_counts(engine, DAY, DAY)
        holder = open_store(url)
        with holder.connect() as conn, conn.begin():
            conn.exec_driver_sql("LOCK TABLE raw_counts IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreBusyError) as caught:
                replace_day_counts(engine, DAY, frame.assign(count=frame["count"] * 2))
            elapsed = time.monotonic() - started
        assert "lock_timeout" in caught.value.message
        assert caught.value.store == url  # the test's server takes no password to hide
        assert elapsed < 10
        pd.testing.assert_frame_equal(read_counts(engine, DAY, DAY), stored)
        engine.dispose()
        holder.dispose()
