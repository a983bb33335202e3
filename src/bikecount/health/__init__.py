"""Counter health: which counters are broken on a day, since when, and the evidence.

Pure: canonical records in (``counter``, ``timestamp`` in Europe/Paris local time, ``count``), a
:class:`HealthReport` out, no I/O. :func:`check_health` is the entry point; the method is in
:mod:`bikecount.health.check`, the hourly grid and the expectations in
:mod:`bikecount.health.expected`, the thresholds in :class:`HealthParams`.
"""

from __future__ import annotations

from bikecount.health.check import check_health
from bikecount.health.report import (
    EXPECTED_COLUMN,
    FAULTS,
    LOWER_COLUMN,
    STATUSES,
    UPPER_COLUMN,
    CounterHealth,
    HealthInputError,
    HealthParams,
    HealthReport,
)

__all__ = [
    "EXPECTED_COLUMN",
    "FAULTS",
    "LOWER_COLUMN",
    "STATUSES",
    "UPPER_COLUMN",
    "CounterHealth",
    "HealthInputError",
    "HealthParams",
    "HealthReport",
    "check_health",
]
