"""Make the three data sets (reference, current, test_sample) from a raw file, or from nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bikecount.config import DATASET_FILES, Settings
from bikecount.data.io import read_records, write_records
from bikecount.data.split import REFERENCE_FRACTION, sample_rows, split_by_time
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.records import parse_records

logger = logging.getLogger(__name__)

RAW_NAMES = ("raw.csv.gz", "raw.csv")  # what synth and fetch write by default, in that order


def default_raw_path(settings: Settings) -> Path:
    """The raw file in the data folder (``raw.csv.gz``, else ``raw.csv``)."""
    candidates = [settings.data_dir / name for name in RAW_NAMES]
    return next((path for path in candidates if path.is_file()), candidates[0])


def write_datasets(
    valid: pd.DataFrame,
    settings: Settings,
    *,
    cutoff: str | None = None,
    fraction: float = REFERENCE_FRACTION,
    sample_size: int | None = None,
    seed: int | None = None,
) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Split valid raw records in time and write the three data sets.

    The test sample stands in for the training set in test mode, so it is drawn from reference.
    """
    reference, current = split_by_time(valid, cutoff=cutoff, fraction=fraction)
    sample = sample_rows(
        reference,
        n=settings.test_sample_rows if sample_size is None else sample_size,
        seed=settings.seed if seed is None else seed,
    )
    frames = {"reference": reference, "current": current, "test_sample": sample}
    return {
        name: (write_records(frame, settings.dataset_path(name)), frame)
        for name, frame in frames.items()
    }


class IncompleteDatasetsError(ValueError):
    """Some data sets exist and others do not, and the missing ones cannot be made without
    replacing those that exist."""


def prepare_datasets(
    settings: Settings, on_stage: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Make sure the three data sets exist: split the raw file, generating it if there is none.

    Existing data sets are kept as they are: a missing test sample is drawn from the reference
    set; a missing reference or current set is refused while the other exists, since a new split
    would replace it.

    Raises:
        IncompleteDatasetsError: reference or current is missing and another set exists.
    """
    stage = on_stage or logger.info
    paths = {name: settings.dataset_path(name) for name in DATASET_FILES}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if not missing:
        return paths
    present = [name for name in paths if name not in missing]
    if missing == ["test_sample"]:
        stage(f"drawing test_sample from {paths['reference']}")
        sample = sample_rows(
            read_records(paths["reference"]), n=settings.test_sample_rows, seed=settings.seed
        )
        write_records(sample, paths["test_sample"])
        return paths
    if present:
        raise IncompleteDatasetsError(
            f"{' and '.join(missing)} missing from {settings.data_dir}/ while "
            f"{' and '.join(present)} exist{'s' if len(present) == 1 else ''}: a new split would "
            "replace them, so nothing was written. Restore the missing set, or move the others "
            "away to make all three again"
        )
    raw_path = default_raw_path(settings)
    if not raw_path.is_file():
        stage(f"no data found: generating synthetic records into {raw_path}")
        config = SynthConfig(seed=settings.seed)
        write_records(generate_records(config), raw_path)
    stage(f"splitting {raw_path} into reference, current and test_sample")
    raw = read_records(raw_path)
    parsed = parse_records(raw, require_count=True)
    valid = raw.reset_index(drop=True).loc[parsed.frame.index]
    written = write_datasets(valid, settings)
    return {name: path for name, (path, _) in written.items()}
