"""What the ``nn`` model's network sees: its input columns, and how a feature frame becomes them.

The feature frame of :mod:`bikecount.features` becomes embedding codes (counter, hour, weekday)
and standardised numbers (the plain columns, then sin/cos of the cyclic ones); the target is
standardised too. :class:`Scaling` learns these encodings from the training rows. A seasonal
value (day of year, month) unseen in training takes the last one seen before it
(:func:`carry_forward_table`): a forecast keeps the latest season it knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bikecount.features import FEATURE_COLUMNS

# Numeric inputs: these feature columns as they are, then sin/cos of the cyclic ones.
COUNTER_COLUMNS = ("counter_level", "profile_level", "lat", "lon")
PLAIN_INPUTS = (*COUNTER_COLUMNS, "is_weekend", "is_holiday", "is_school_holiday")
CYCLE_PERIODS = {"hour": 24.0, "day_of_year": 365.25, "month": 12.0}
NUMERIC_INPUTS = PLAIN_INPUTS + tuple(f"{col}_{f}" for col in CYCLE_PERIODS for f in ("sin", "cos"))
# Seasonal columns and the size of their lookup table (values 0..size-1), see carry_forward_table.
SEASON_SIZES = {"day_of_year": 367, "month": 13}
# Which numeric inputs each part of the network sees (see bikecount.models.neural).
WEEK_INPUTS = ("is_weekend", "is_holiday", "hour_sin", "hour_cos")
COUNTER_INPUTS = (*COUNTER_COLUMNS, "is_school_holiday", *WEEK_INPUTS)
SEASON_INPUTS = (*WEEK_INPUTS, "day_of_year_sin", "day_of_year_cos", "month_sin", "month_cos")
USED_COLUMNS = ("counter_code", "weekday", *PLAIN_INPUTS, *CYCLE_PERIODS)


def feature_frame(X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """The feature columns as a frame; a bare array is read in ``FEATURE_COLUMNS`` order."""
    if not isinstance(X, pd.DataFrame):
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] != len(FEATURE_COLUMNS):
            raise ValueError(
                f"TorchRegressor needs the {len(FEATURE_COLUMNS)} columns {FEATURE_COLUMNS}, "
                f"got an array of shape {array.shape}"
            )
        X = pd.DataFrame(array, columns=list(FEATURE_COLUMNS))
    missing = [col for col in USED_COLUMNS if col not in X.columns]
    if missing:
        raise ValueError(f"TorchRegressor needs the feature columns {missing}")
    return X


def carry_forward_table(seen: np.ndarray, size: int) -> np.ndarray:
    """A lookup table over 0..size-1: seen values map to themselves, others to the last seen
    value before them, going round the cycle (before the first seen value, the last one counts).
    """
    values = np.unique(np.clip(np.asarray(seen, dtype=np.int64), 0, size - 1))
    if values.size == 0:
        return np.arange(size, dtype=np.float64)
    latest = np.full(size, -1, dtype=np.int64)
    latest[values] = values
    latest = np.maximum.accumulate(latest)
    latest[latest < 0] = values[-1]
    return latest.astype(np.float64)


def _raw_numeric(frame: pd.DataFrame, season_maps: dict[str, np.ndarray]) -> np.ndarray:
    """``NUMERIC_INPUTS`` before standardisation, seasonal values first mapped to seen ones."""
    columns = [frame[col].to_numpy(dtype=np.float64) for col in PLAIN_INPUTS]
    for col, period in CYCLE_PERIODS.items():
        values = frame[col].to_numpy(dtype=np.float64)
        if col in season_maps:
            table = season_maps[col]
            values = table[np.clip(values, 0, len(table) - 1).astype(np.int64)]
        angle = 2.0 * np.pi * values / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.column_stack(columns)


@dataclass
class Scaling:
    """How inputs and target are encoded, learned from the training rows."""

    n_codes: int  # known counter codes 0..K-1, then the spare code K for any other
    season_maps: dict[str, np.ndarray]
    numeric_mean: np.ndarray
    numeric_scale: np.ndarray
    target_mean: float
    target_scale: float
    target_range: tuple[float, float]

    @classmethod
    def learn(cls, frame: pd.DataFrame, target: np.ndarray) -> Scaling:
        season_maps = {
            col: carry_forward_table(frame[col].to_numpy(), size)
            for col, size in SEASON_SIZES.items()
        }
        raw = _raw_numeric(frame, season_maps)
        scale = raw.std(axis=0)
        return cls(
            n_codes=int(np.nanmax(frame["counter_code"].to_numpy(), initial=-1)) + 2,
            season_maps=season_maps,
            numeric_mean=raw.mean(axis=0),
            # A constant column (e.g. no holiday in the data) is centred and left at zero.
            numeric_scale=np.where(scale > 1e-12, scale, 1.0),
            target_mean=float(target.mean()),
            target_scale=float(target.std()) or 1.0,
            target_range=(float(target.min()), float(target.max())),
        )

    def inputs(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding codes (unknown counters take the spare code) and standardised numbers."""
        counter = frame["counter_code"].to_numpy(dtype=np.float64)
        spare = self.n_codes - 1
        counter = np.where((counter >= 0) & (counter < spare), counter, spare)
        hour = np.clip(frame["hour"].to_numpy(dtype=np.float64), 0, 23)
        weekday = np.clip(frame["weekday"].to_numpy(dtype=np.float64), 0, 6)
        codes = np.column_stack([counter, hour, weekday]).astype(np.int64)
        numeric = (_raw_numeric(frame, self.season_maps) - self.numeric_mean) / self.numeric_scale
        return torch.from_numpy(codes), torch.from_numpy(numeric.astype(np.float32))

    def target(self, target: np.ndarray) -> torch.Tensor:
        scaled = (target - self.target_mean) / self.target_scale
        return torch.from_numpy(scaled.astype(np.float32))
