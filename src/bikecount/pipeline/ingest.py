"""Daily ingest: one local day of records from a source, validated, written to the store.

A source is a file-drop folder (every export file in it, or one file) or ``synthetic`` (the
generator, for demos). Rows of other days are not this run's business and are skipped silently;
rows of the day that break the record contract are rejected and counted with their reasons.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from bikecount.config import Settings
from bikecount.data.io import SUPPORTED_SUFFIXES, DataFileError, read_records
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.pipeline.store import log_ingest, open_store, replace_day_counts
from bikecount.records import (
    PARIS_TZ,
    TIMESTAMP,
    parse_records,
    parse_timestamps,
    to_export_columns,
)

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
DUPLICATE_REASON = "counter and hour: expected one record per counter and hour"


@dataclass
class IngestResult:
    """What one ingest run did: rows of the day seen, written and rejected (and why)."""

    day: str
    source: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest(settings: Settings, day: date, source: str | Path = SYNTHETIC) -> IngestResult:
    """Ingest the records of local ``day`` from ``source`` into the store, replacing that day.

    Args:
        settings: the store URL (``pipeline_db_url``) and the generator's seed.
        day: the Europe/Paris calendar day to ingest.
        source: a folder of export files, one export file, or ``"synthetic"``.

    Returns:
        Rows of the day in the source, written and rejected, with the rejection reasons.

    Raises:
        DataFileError: the source does not exist or holds no readable record file.
    """
    raw = read_source(source, day, settings.seed)
    day_rows = rows_of_day(raw, day)
    parsed = parse_records(day_rows, require_count=True)
    reasons = parsed.drop_reasons()
    frame = parsed.frame
    duplicated = frame.duplicated(["counter", "timestamp"], keep="last")
    if duplicated.any():
        # Two values for one counter and hour: keep the later row, as a corrected export would.
        reasons[DUPLICATE_REASON] = int(duplicated.sum())
        frame = frame[~duplicated]
    engine = open_store(settings.pipeline_db_url)
    written = replace_day_counts(engine, day, frame)
    rejected = len(day_rows) - written
    log_ingest(engine, day, str(source), len(day_rows), rejected, reasons)
    logger.info("ingest %s from %s: %d in, %d rejected", day, source, len(day_rows), rejected)
    return IngestResult(day.isoformat(), str(source), len(day_rows), written, rejected, reasons)


def read_source(source: str | Path, day: date, seed: int) -> pd.DataFrame:
    """Raw records (export columns) from a folder, a file or the generator."""
    if str(source) == SYNTHETIC:
        # A whole month from its first day, so that a day's values do not depend on which day
        # of the month a demo starts with.
        config = SynthConfig(
            start=day.replace(day=1).isoformat(), months=1, n_counters=20, seed=seed
        )
        return generate_records(config)
    path = Path(source)
    if path.is_file():
        return to_export_columns(read_records(path))
    if not path.is_dir():
        raise DataFileError(
            f"{path}: no such folder or file (give a file-drop folder or 'synthetic')"
        )
    files = sorted(
        p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SUPPORTED_SUFFIXES)
    )
    if not files:
        raise DataFileError(
            f"{path}: no record file ({', '.join(SUPPORTED_SUFFIXES)}) in the folder"
        )
    return pd.concat([to_export_columns(read_records(p)) for p in files], ignore_index=True)


def rows_of_day(raw: pd.DataFrame, day: date) -> pd.DataFrame:
    """The raw rows whose timestamp falls on local ``day``.

    An unparsable timestamp belongs to no day by its value; when its text starts with the day
    (``2021-06-01 25:00``) it is kept so that it is rejected, and counted, with the day's rows.
    """
    if TIMESTAMP not in raw.columns:
        return raw  # parse_records names the missing column
    text = raw[TIMESTAMP].astype("string").str.strip()
    stamps = parse_timestamps(raw[TIMESTAMP])
    on_day = stamps.dt.tz_convert(PARIS_TZ).dt.date == day
    unparsable_of_day = stamps.isna() & text.str.startswith(day.isoformat()).fillna(False)
    return raw[on_day.fillna(False) | unparsable_of_day].reset_index(drop=True)
