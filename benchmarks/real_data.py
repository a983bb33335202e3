"""Where the benchmarks find the real Paris counts, and what they use when those are absent.

The folder is ``BIKECOUNT_REAL_DATA``, by default ``../shared/data/paris-counters-2020-2021``
from the repository root. The count files are never copied into the repository: without them,
the benchmarks run on the project's generator.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bikecount.data.io import read_records
from bikecount.data.synthetic import SynthConfig, generate_records

ROOT = Path(__file__).resolve().parents[1]
FILES = ("reference.csv.gz", "current.csv.gz")
GENERATED = "generated (SynthConfig defaults; no real data)"


def folder() -> Path:
    default = ROOT.parent / "shared" / "data" / "paris-counters-2020-2021"
    return Path(os.environ.get("BIKECOUNT_REAL_DATA", default))


def real_files(names: tuple[str, ...] = FILES) -> list[Path] | None:
    """The real files ``names`` when every one of them is there, else None."""
    paths = [folder() / name for name in names]
    return paths if all(path.is_file() for path in paths) else None


def load_raw(names: tuple[str, ...] = FILES) -> tuple[pd.DataFrame, str]:
    """Raw export records of the real files ``names`` (one frame), else generated records; and
    a description of where they come from."""
    paths = real_files(names)
    if paths is None:
        return generate_records(SynthConfig(start="2020-09-01")), GENERATED
    return pd.concat([read_records(p) for p in paths], ignore_index=True), f"real ({folder()})"
