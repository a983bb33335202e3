"""Training-data cleaning: counter outages are not traffic.

A broken counter reports zeros for days or weeks. Fitting on those runs teaches a model that a
busy street is empty, so runs of zeros longer than a day are dropped before fitting (never from
the holdout, whose scores stay honest).
"""

from __future__ import annotations

import logging

import pandas as pd

from bikecount.records import COUNT_COLUMN, COUNTER_COLUMN, RECORD_KEY

logger = logging.getLogger(__name__)


def outage_mask(frame: pd.DataFrame, min_hours: int = 24) -> pd.Series:
    """True for rows inside a run of at least ``min_hours`` consecutive zero counts of a counter.

    Args:
        frame: canonical records with ``counter``, ``timestamp`` and ``count``.
        min_hours: shortest run of zeros taken as an outage; quiet nights are far shorter.
    """
    ordered = frame.sort_values(list(RECORD_KEY), kind="stable")
    zero = ordered[COUNT_COLUMN].eq(0)
    # A new run starts where zero-ness or the counter changes.
    starts = zero.ne(zero.shift()) | ordered[COUNTER_COLUMN].ne(ordered[COUNTER_COLUMN].shift())
    run_id = starts.cumsum()
    run_length = run_id.map(run_id.value_counts())
    mask = zero & (run_length >= min_hours)
    return mask.reindex(frame.index)


def drop_outages(frame: pd.DataFrame, min_hours: int = 24) -> pd.DataFrame:
    """The records without counter outages (see :func:`outage_mask`)."""
    mask = outage_mask(frame, min_hours)
    if mask.any():
        logger.info("dropping %d outage rows (zero runs >= %d h)", int(mask.sum()), min_hours)
    return frame[~mask]
