"""Counter outages (long runs of zeros) are not traffic: dropped before fitting, nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bikecount.cleaning import drop_outages, outage_mask
from bikecount.records import PARIS_TZ


def hourly(counter: str, counts: list[int], start: str = "2021-06-01") -> pd.DataFrame:
    stamps = pd.date_range(start, periods=len(counts), freq="h", tz=PARIS_TZ)
    return pd.DataFrame({"counter": counter, "timestamp": stamps, "count": counts})


def test_a_day_of_zeros_is_an_outage_and_a_quiet_night_is_not() -> None:
    night = [5, 0, 0, 0, 0, 0, 3]  # five zero hours: a quiet night
    outage = [0] * 24  # a whole day of zeros: the sensor
    frame = hourly("A", [8, *night, *outage, 9])
    mask = outage_mask(frame, min_hours=24)
    assert mask.sum() == 24
    assert frame.loc[mask, "count"].eq(0).all()
    assert not mask.iloc[: 1 + len(night)].any() and not mask.iloc[-1]


def test_runs_are_counted_per_counter_whatever_the_row_order() -> None:
    # 12 zeros at the end of A and 12 at the start of B are not one run of 24.
    parts = [hourly("A", [4] * 12 + [0] * 12), hourly("B", [0] * 12 + [6] * 12)]
    frame = pd.concat(parts, ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert not outage_mask(shuffled, min_hours=24).any()
    assert outage_mask(shuffled, min_hours=12).sum() == 24


def test_drop_outages_keeps_every_other_row_and_its_index() -> None:
    frame = pd.concat([hourly("A", [1] * 3 + [0] * 30 + [2] * 3), hourly("B", [0] * 5)])
    frame.index = np.arange(100, 100 + len(frame))
    kept = drop_outages(frame, min_hours=24)
    assert len(kept) == len(frame) - 30
    assert kept.index.is_unique and set(kept.index) <= set(frame.index)
    assert (kept["counter"] == "B").sum() == 5  # short runs stay
    assert drop_outages(frame.iloc[:3], min_hours=24).equals(frame.iloc[:3])
