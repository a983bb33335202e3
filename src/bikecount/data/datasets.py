"""Data set names (``reference``, ``current``, ``test_sample``) and paths, resolved to files."""

from __future__ import annotations

from pathlib import Path

from bikecount.config import DATASET_FILES, Settings
from bikecount.data.io import DataFileError


def resolve_data_source(source: str, settings: Settings, *, test_mode: bool = False) -> Path:
    """The file behind a data set name or path; test mode swaps a named set for the test sample.

    Raises:
        DataFileError: the file does not exist, with the command that creates it.
    """
    if source in DATASET_FILES:
        path = settings.dataset_path("test_sample" if test_mode else source)
    else:
        path = Path(source).expanduser()
    if not path.is_file():
        hint = (
            "create the data sets with `bikecount data synth && bikecount data split`"
            if source in DATASET_FILES
            else "give a .csv, .csv.gz or .parquet file in the export format"
        )
        raise DataFileError(f"data file not found: {path} ({hint})")
    return path
