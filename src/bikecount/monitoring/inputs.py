"""What a monitoring run compares: each side's canonical records, read from a file or given as
a frame, and where they came from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from bikecount.data.io import DataFileError, read_records
from bikecount.fingerprint import file_fingerprint
from bikecount.records import RecordError, parse_records

logger = logging.getLogger(__name__)

MonitoringData: TypeAlias = Path | pd.DataFrame


class MonitoringDataError(ValueError):
    """One side of a comparison cannot be used; ``side`` says which (reference or current)."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side


def read_canonical(path: Path) -> pd.DataFrame:
    """The valid canonical records of a file (invalid rows dropped and logged)."""
    parsed = parse_records(read_records(path))
    if parsed.dropped_rows:
        logger.warning("%s: %d invalid rows dropped", path, parsed.dropped_rows)
    return parsed.frame


def monitoring_input(side: str, data: MonitoringData) -> tuple[pd.DataFrame, dict[str, str]]:
    """One side's canonical records and what to record about where they came from.

    A path is read (invalid rows dropped) and fingerprinted; a frame is canonical records
    already read, such as those of a request body.

    Raises:
        MonitoringDataError: the file is missing, unreadable or not in the export format.
    """
    if isinstance(data, pd.DataFrame):
        return data, {side: f"request body ({len(data):,} records)"}
    path = Path(data)
    try:
        frame = read_canonical(path)
        fingerprint = file_fingerprint(path)
    except (DataFileError, RecordError, OSError) as exc:
        raise MonitoringDataError(side, str(exc)) from exc
    return frame, {side: str(path), f"{side}_fingerprint": fingerprint}
