"""Preparing the data sets keeps what is there: a data set the user has is never replaced."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import IncompleteDatasetsError, prepare_datasets, write_datasets


@pytest.fixture
def settings(tmp_path: Path, small_raw: pd.DataFrame) -> Settings:
    """The three data sets of the small generated records, in a data folder of their own."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", test_sample_rows=50)
    write_datasets(small_raw, settings)
    return settings


def contents(settings: Settings) -> dict[str, bytes]:
    paths = {name: settings.dataset_path(name) for name in ("reference", "current", "test_sample")}
    return {name: path.read_bytes() for name, path in paths.items() if path.is_file()}


def test_complete_data_sets_are_left_as_they_are(settings: Settings) -> None:
    before = contents(settings)
    assert prepare_datasets(settings) == {
        name: settings.dataset_path(name) for name in ("reference", "current", "test_sample")
    }
    assert contents(settings) == before


def test_a_missing_test_sample_is_drawn_from_the_reference_set(settings: Settings) -> None:
    settings.dataset_path("test_sample").unlink()
    before = contents(settings)

    prepare_datasets(settings)

    after = contents(settings)
    assert {k: after[k] for k in before} == before, "reference and current untouched"
    sample = read_records(settings.dataset_path("test_sample"))
    reference = read_records(settings.dataset_path("reference"))
    assert len(sample) == 50
    merged = sample.merge(reference.drop_duplicates(), how="left", indicator=True)
    assert (merged["_merge"] == "both").all(), "every sampled record is a reference record"


@pytest.mark.parametrize("lost", ["current", "reference"])
def test_a_missing_split_is_refused_and_nothing_is_written(settings: Settings, lost: str) -> None:
    settings.dataset_path(lost).unlink()
    before = contents(settings)

    with pytest.raises(
        IncompleteDatasetsError, match=f"{lost} missing from .* nothing was written"
    ):
        prepare_datasets(settings)

    assert contents(settings) == before
    assert not (settings.data_dir / "raw.csv.gz").exists(), "no generated records either"


def test_the_cli_says_what_is_missing_and_how_to_fix_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.dataset_path("current").unlink()
    before = contents(settings)
    monkeypatch.setenv("BIKECOUNT_DATA_DIR", str(settings.data_dir))
    monkeypatch.chdir(settings.data_dir.parent)

    result = CliRunner().invoke(app, ["data", "prepare"])

    assert result.exit_code == 1, result.output
    assert "current missing" in result.output and "move the others away" in result.output
    assert "Traceback" not in result.output
    assert contents(settings) == before
