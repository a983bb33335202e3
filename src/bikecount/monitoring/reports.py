"""Drift reports on disk, bounded: each monitoring run writes a few megabytes of HTML (also
logged to MLflow); only the newest ``Settings.reports_keep`` stay in the reports folder."""

from __future__ import annotations

import logging
from contextlib import suppress
from pathlib import Path

logger = logging.getLogger(__name__)

REPORT_PATTERN = "drift_*.html"  # what monitoring.drift writes: names sort by time


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
