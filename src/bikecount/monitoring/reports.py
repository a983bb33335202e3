"""Drift reports on disk, bounded: each monitoring run writes a few megabytes of HTML (also
logged to MLflow); only the newest ``Settings.reports_keep`` stay in the reports folder."""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from bikecount.faults import storage_fault
from bikecount.monitoring.drift import DriftReport

logger = logging.getLogger(__name__)

REPORT_PATTERN = "drift_*.html"  # what new_report_path names: names sort by time


def new_report_path(folder: Path, now: datetime | None = None) -> Path:
    """Where a report written ``now`` (default: the current time) goes in ``folder``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return folder / f"drift_{stamp}.html"


def write_report(snapshot: DriftReport, path: Path | str) -> str:
    """Save Evidently's HTML report (folders created); return its path as text.

    Raises:
        StorageError: the reports' disk is full, read-only or forbidden (no partial file kept).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(target))
    except OSError as exc:
        with suppress(OSError):  # a read-only disk keeps no partial file to remove
            target.unlink(missing_ok=True)
        fault = storage_fault(exc, str(target), "writing the drift report", "BIKECOUNT_REPORTS_DIR")
        if fault is None:
            raise
        raise fault from exc
    logger.info("drift report written to %s", target)
    return str(target)


def prune_reports(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest drift reports of ``folder``; return those deleted."""
    reports = sorted(folder.glob(REPORT_PATTERN), key=lambda path: (path.stat().st_mtime, path))
    removed = reports[: max(len(reports) - keep, 0)]
    for path in removed:
        with suppress(FileNotFoundError):  # another run pruned it first
            path.unlink()
    if removed:
        logger.info("%d old drift report(s) removed from %s, %d kept", len(removed), folder, keep)
    return removed
