"""The DVC pipeline runs offline in a copy of the repository: `dvc repro`, then `dvc push`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bikecount.data.io import read_records
from helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE_ROWS = 150


def copy_worktree(dest: Path) -> None:
    """Copy the repository's files as they are in the working tree: tracked and new, not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repository, a git repo of its own, with a tiny synthetic data set."""
    dest = tmp_path_factory.mktemp("repo")
    copy_worktree(dest)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    params_file = dest / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["synth"].update(months=2, counters=6)
    params["split"]["sample_rows"] = SAMPLE_ROWS
    params_file.write_text(yaml.safe_dump(params))
    return dest


@pytest.fixture(scope="module")
def dvc_env() -> dict[str, str]:
    """The environment of the test, with this virtualenv's `bikecount` and `dvc` first on PATH."""
    env = {
        key: val for key, val in os.environ.items() if not key.startswith(("BIKECOUNT_", "MLFLOW_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


@pytest.fixture(scope="module")
def reproduced(repo_copy: Path, dvc_env: dict[str, str]) -> Path:
    run(["dvc", "repro"], cwd=repo_copy, env=dvc_env)
    return repo_copy


def test_repro_split_writes_the_three_data_sets(reproduced: Path) -> None:
    data = reproduced / "data"
    for name in ("raw.csv.gz", "reference_data.csv", "current_data.csv", "test_sample.csv"):
        assert (data / name).is_file(), name

    reference = read_records(data / "reference_data.csv")
    current = read_records(data / "current_data.csv")
    raw = read_records(data / "raw.csv.gz")
    assert len(reference) + len(current) == len(raw)
    assert len(read_records(data / "test_sample.csv")) == SAMPLE_ROWS
    assert raw["Nom du compteur"].nunique() == 6


def test_repro_trains_and_evaluates_a_model(reproduced: Path) -> None:
    trained = json.loads((reproduced / "reports" / "train_gbm.json").read_text())
    evaluated = json.loads((reproduced / "reports" / "evaluate_gbm.json").read_text())

    assert trained["model_name"] == "bikecount-gbm" and trained["champion"] is True
    assert set(trained["metrics"]) == {"rmse", "mae", "r2", "rmse_log1p"}
    assert evaluated["version"] == trained["version"]
    assert evaluated["rows"] == len(read_records(reproduced / "data" / "current_data.csv"))
    assert (reproduced / "mlruns_dev" / "mlflow.db").is_file()


def test_pipeline_is_up_to_date_after_repro(reproduced: Path, dvc_env: dict[str, str]) -> None:
    status = run(["dvc", "status"], cwd=reproduced, env=dvc_env)

    assert "up to date" in status.stdout
    lock = yaml.safe_load((reproduced / "dvc.lock").read_text())
    assert lock["stages"]["synth"]["params"]["params.yaml"]["synth.months"] == 2


def test_push_to_the_default_local_remote(reproduced: Path, dvc_env: dict[str, str]) -> None:
    run(["dvc", "push", "synth", "split"], cwd=reproduced, env=dvc_env)

    remote = reproduced / "dvc_remote"
    assert sum(1 for path in remote.rglob("*") if path.is_file()) >= 4
