"""Daily ingest: one local day of records from a source, validated, written to the store.

A source is Paris Open Data (the day asked of the Explore API), a file-drop folder (every export
file in it, or one file) or ``synthetic`` (the generator, for demos). Without a source named,
Open Data is asked first and the configured fallback read when it cannot be reached. Rows of
other days are not this run's business and are skipped silently; rows of the day that break the
record contract are rejected and counted with their reasons. A source with no valid row of the
day leaves the stored day as it was: an empty answer is a late export, not a day without bikes.
Nor does a source that would shrink a stored day materially (below
``Settings.pipeline_reingest_min_share`` of its rows) replace it, unless forced: a partial file
or a half-published export must not silently destroy a complete day. The ingest log records the
refusal, or the forced replacement.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from bikecount.config import Settings
from bikecount.data.fetch import FetchError
from bikecount.data.io import SUPPORTED_SUFFIXES, DataFileError, read_records
from bikecount.data.opendata import read_day
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.pipeline import PipelineError
from bikecount.pipeline.store import log_ingest, read_counts, replace_day_counts
from bikecount.pipeline.store_engine import open_pipeline_store
from bikecount.records import (
    PARIS_TZ,
    RECORD_KEY,
    TIMESTAMP,
    parse_records,
    parse_timestamps,
    to_export_columns,
)

logger = logging.getLogger(__name__)

OPEN_DATA = "opendata"
SYNTHETIC = "synthetic"
DUPLICATE_REASON = "counter and hour: expected one record per counter and hour"
# Keys of the ingest log's reasons (rows of the stored day) when a re-ingest would shrink it.
SHRINK_REFUSED = "re-ingest refused: it would shrink the stored day (stored rows kept)"
SHRINK_FORCED = "re-ingest forced: the stored day shrank (stored rows replaced)"


class ShrinkRefusedError(PipelineError):
    """A re-ingest that would replace a stored day by materially fewer rows, not forced."""


@dataclass
class IngestResult:
    """What one ingest run did: rows of the day seen, written and rejected (and why)."""

    day: str
    source: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    reasons: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def rejected_share(self) -> float:
        return self.rows_rejected / self.rows_in if self.rows_in else 0.0


def ingest_day(
    settings: Settings, day: date, source: str | Path | None = None, *, force: bool = False
) -> IngestResult:
    """Ingest ``day`` from ``source``; without one, from Open Data, else the configured fallback.

    Raises:
        PipelineError: Open Data is unreachable and no fallback is configured, or the source
            holds no valid record of the day.
        ShrinkRefusedError: the source would shrink the stored day and ``force`` is not set.
        FetchError: Open Data was named as the source and cannot be reached.
        DataFileError: a folder or file source does not exist or holds no readable record file.
    """
    if source is not None:
        return ingest(settings, day, source, force=force)
    note = None
    if settings.pipeline_open_data:
        try:
            return ingest(settings, day, OPEN_DATA, force=force)
        except FetchError as exc:
            note = f"Paris Open Data unreachable ({exc})"
            logger.warning("%s", note)
    fallback = settings.ingest_fallback
    if fallback is None:
        raise PipelineError(
            f"{note or 'Paris Open Data is switched off'} and no fallback source is set: "
            "set BIKECOUNT_PIPELINE_SOURCE to a file-drop folder (or 'synthetic' for a demo)"
        )
    result = ingest(settings, day, fallback, force=force)
    fallback_note = f"{note}; read {fallback} instead" if note else None
    result.note = "; ".join(text for text in (fallback_note, result.note) if text) or None
    return result


def ingest(
    settings: Settings, day: date, source: str | Path = SYNTHETIC, *, force: bool = False
) -> IngestResult:
    """Ingest the records of local ``day`` from ``source`` into the store, replacing that day.

    Args:
        settings: the store URL (``pipeline_db_url``), Open Data URL, generator seed, and the
            share of a stored day's rows below which a re-ingest is refused.
        day: the Europe/Paris calendar day to ingest.
        source: ``"opendata"``, a folder of export files, one export file, or ``"synthetic"``.
        force: replace the stored day even by materially fewer rows.

    Returns:
        Rows of the day in the source, written and rejected, with the rejection reasons.

    Raises:
        PipelineError: the source holds no valid record of the day (the stored day is kept).
        ShrinkRefusedError: the source would shrink the stored day (kept) and ``force`` is off.
        FetchError: Open Data cannot be reached or answers an error.
        DataFileError: the source does not exist or holds no readable record file.
    """
    raw, source_note = read_source(settings, source, day)
    day_rows = rows_of_day(raw, day)
    frame, reasons = valid_records(day_rows)
    engine = open_pipeline_store(settings)
    stored = len(read_counts(engine, day, day))
    shrink = shrink_of(settings, day, source, len(frame), stored)
    keep_stored = frame.empty or (shrink is not None and not force)
    written = 0 if keep_stored else replace_day_counts(engine, day, frame)
    rejected = len(day_rows) - len(frame)
    logged = dict(reasons)
    if shrink is not None:
        logged[SHRINK_FORCED if force else SHRINK_REFUSED] = stored
    log_ingest(engine, day, str(source), len(day_rows), rejected, logged)
    logger.info("ingest %s from %s: %d in, %d rejected", day, source, len(day_rows), rejected)
    if frame.empty:
        raise PipelineError(
            f"no valid record of {day} in {source} ({len(day_rows)} rows of the day, "
            f"{rejected} rejected); the stored day is left as it was"
        )
    if keep_stored:
        logger.warning("re-ingest refused: %s", shrink)
        raise ShrinkRefusedError(
            f"re-ingest refused: {shrink}; the stored day is left as it was. Force it "
            '(--force, or {"force": true} for the DAG) if the smaller day is right'
        )
    result = IngestResult(day.isoformat(), str(source), len(day_rows), written, rejected, reasons)
    result.note = source_note
    if shrink is not None:
        logger.warning("re-ingest forced: %s", shrink)
        forced = f"forced: the stored day shrank ({shrink})"
        result.note = "; ".join(text for text in (source_note, forced) if text)
    return result


def valid_records(day_rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The canonical frame of a day's valid records, and the count of rows dropped by reason."""
    parsed = parse_records(day_rows, require_count=True)
    reasons = parsed.drop_reasons()
    frame = parsed.frame
    duplicated = frame.duplicated(list(RECORD_KEY), keep="last")
    if duplicated.any():
        # Two values for one counter and hour: keep the later row, as a corrected export would.
        reasons[DUPLICATE_REASON] = int(duplicated.sum())
        frame = frame[~duplicated]
    return frame, reasons


def shrink_of(
    settings: Settings, day: date, source: str | Path, rows: int, stored: int
) -> str | None:
    """What a re-ingest of ``rows`` valid rows would do to a day of ``stored`` rows, when it
    would shrink it below ``pipeline_reingest_min_share`` of them; None when it would not."""
    share = settings.pipeline_reingest_min_share
    if rows == 0 or rows >= stored * share:
        return None
    return (
        f"{rows:,} valid rows of {day} in {source} against {stored:,} stored "
        f"(below {share:.0%} of them)"
    )


def check_rejections(result: IngestResult, max_share: float) -> None:
    """Raise when more than ``max_share`` of the day's rows were rejected (the source broke).

    Raises:
        PipelineError: naming the share and the reasons.
    """
    if result.rejected_share > max_share:
        reasons = "; ".join(f"{n} × {reason}" for reason, n in result.reasons.items())
        raise PipelineError(
            f"{result.day}: {result.rows_rejected} of {result.rows_in} rows rejected "
            f"({result.rejected_share:.0%}, above {max_share:.0%}): {reasons}"
        )


def read_source(
    settings: Settings, source: str | Path, day: date
) -> tuple[pd.DataFrame, str | None]:
    """Raw records (export labels) from Open Data, a folder, a file or the generator, and a
    note when the source was read another way than asked (Open Data's records endpoint)."""
    if str(source) == OPEN_DATA:
        raw, note = read_day(settings.open_data_url, day)
        return to_export_columns(raw), note
    if str(source) == SYNTHETIC:
        # A whole month from its first day, so that a day's values do not depend on which day
        # of the month a demo starts with.
        config = SynthConfig(start=day.replace(day=1).isoformat(), months=1, seed=settings.seed)
        return generate_records(config), None
    return read_files(Path(source)), None


def read_files(path: Path) -> pd.DataFrame:
    """The records of one file, or of every record file of a folder, each file in any spelling."""
    if path.is_file():
        return to_export_columns(read_records(path))
    if not path.is_dir():
        raise DataFileError(
            f"{path}: no such folder or file (give a file-drop folder, '{OPEN_DATA}' "
            f"or '{SYNTHETIC}')"
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
