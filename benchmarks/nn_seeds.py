"""Accuracy and fit time of the ``nn`` model across seeds, on the real Paris data.

Protocol: concatenate the reference and current files, sort by timestamp, train on everything
before (last timestamp - 28 days) and score counts on the last 28 days: R² and RMSE on counts,
RMSE on log1p(count). ``--drop-outages`` first drops counter outages from the training rows, as
``bikecount.train`` does. The data folder is ``BIKECOUNT_REAL_DATA``, by default
``../shared/data/paris-counters-2020-2021`` from the repository root; without it, the benchmark
says so and stops.

    python benchmarks/nn_seeds.py [--seeds 0 1 2] [--drop-outages]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import real_data
from sklearn.metrics import mean_squared_error, r2_score

from bikecount.cleaning import drop_outages
from bikecount.data.io import read_records
from bikecount.models.neural import build_nn_model
from bikecount.models.nn_network import NNParams
from bikecount.records import parse_records

DATA_FILES = ("reference.csv.gz", "current.csv.gz")
TEST_DAYS = 28


def load_records(folder: Path) -> pd.DataFrame:
    """Canonical records of both files, oldest first."""
    frames = [
        parse_records(read_records(folder / name), require_count=True).frame for name in DATA_FILES
    ]
    records = pd.concat(frames, ignore_index=True)
    return records.sort_values("timestamp", kind="stable").reset_index(drop=True)


def split_last_days(records: pd.DataFrame, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    cutoff = records["timestamp"].max() - pd.Timedelta(days=days)
    later = records["timestamp"] >= cutoff
    return records[~later], records[later]


def score_seed(seed: int, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Fit the default ``nn`` model with this seed; its figures on the test rows."""
    model = build_nn_model(NNParams(), seed)
    started = time.perf_counter()
    model.fit(train, train["count"].to_numpy())
    fit_seconds = time.perf_counter() - started
    predicted = model.predict(test)
    actual = test["count"].to_numpy()
    network = model.regressor_[-1]
    return {
        "seed": seed,
        "r2": r2_score(actual, predicted),
        "rmse": mean_squared_error(actual, predicted) ** 0.5,
        "rmse_log1p": mean_squared_error(np.log1p(actual), np.log1p(predicted)) ** 0.5,
        "fit_s": fit_seconds,
        "epochs": network.n_epochs_,
        "best_epoch": network.best_epoch_,
        "mean_predicted": predicted.mean(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--drop-outages", action="store_true")
    args = parser.parse_args(argv)
    folder = real_data.folder()
    if not all((folder / name).is_file() for name in DATA_FILES):
        print(f"skipped: the real data is not in {folder} (set BIKECOUNT_REAL_DATA)")
        return 0
    logging.basicConfig(level=logging.WARNING)
    train, test = split_last_days(load_records(folder), TEST_DAYS)
    if args.drop_outages:
        train = drop_outages(train)
    print(
        f"train: {len(train):,} rows up to {train['timestamp'].max()}; "
        f"test: {len(test):,} rows, mean count {test['count'].mean():.1f}"
        + (" (outages dropped from training)" if args.drop_outages else "")
    )
    print(f"{'seed':>4} {'R2':>7} {'RMSE':>7} {'RMSE log1p':>10} {'fit s':>7} {'epochs':>10}")
    rows = []
    for seed in args.seeds:
        row = score_seed(seed, train, test)
        rows.append(row)
        print(
            f"{seed:>4} {row['r2']:>7.4f} {row['rmse']:>7.2f} {row['rmse_log1p']:>10.4f} "
            f"{row['fit_s']:>7.1f} {row['best_epoch']:>4}/{row['epochs']:<5}"
            f" (mean predicted {row['mean_predicted']:.1f})",
            flush=True,
        )
    r2 = np.array([row["r2"] for row in rows])
    print(
        f"R2 mean {r2.mean():.4f}, range {r2.min():.4f}..{r2.max():.4f} (spread {np.ptp(r2):.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
