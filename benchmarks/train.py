"""Training benchmark: per model type, fit time, peak memory, model size and holdout metrics.

Protocol (as in production, the month after training): train on everything up to four weeks
before the end of the data, score on those last four weeks. Uses the real Paris data when present
(``BIKECOUNT_REAL_DATA``, default ``../shared/data/paris-counters-2020-2021`` from the repo root),
else generated data. Each model is fitted in its own process so its peak memory is its own.

    python benchmarks/train.py [rf gbm nn rf_class] [--seed N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import resource
import time
from pathlib import Path

import pandas as pd

from bikecount.cleaning import drop_outages
from bikecount.data.io import read_records
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.evaluate import score_model
from bikecount.models import MODEL_TYPES, build_model, get_spec, parse_params
from bikecount.records import parse_records

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(
    os.environ.get("BIKECOUNT_REAL_DATA", ROOT.parent / "shared/data/paris-counters-2020-2021")
)


def load_data() -> tuple[pd.DataFrame, str]:
    """The canonical records and a description of where they come from."""
    files = [REAL_DATA / "reference.csv.gz", REAL_DATA / "current.csv.gz"]
    if all(path.is_file() for path in files):
        raw = pd.concat([read_records(path) for path in files], ignore_index=True)
        source = f"real Paris data ({REAL_DATA})"
    else:
        raw = generate_records(SynthConfig())
        source = "generated data (SynthConfig defaults; real data not found)"
    frame = parse_records(raw, require_count=True).frame.sort_values("timestamp", kind="stable")
    return frame, source


def split_last_weeks(frame: pd.DataFrame, weeks: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    cutoff = frame["timestamp"].max() - pd.Timedelta(weeks=weeks)
    later = frame["timestamp"] > cutoff
    return frame[~later], frame[later]


def fit_and_score(model_type: str, seed: int, train: pd.DataFrame, test: pd.DataFrame, out) -> None:
    """Child process: fit one model, then report its figures through ``out``."""
    spec = get_spec(model_type)
    model = build_model(model_type, parse_params(model_type), seed)
    started = time.perf_counter()
    fitted_on = drop_outages(train)
    model.fit(fitted_on, fitted_on["count"].to_numpy())
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = score_model(model, spec.task, test)
    predict_seconds = time.perf_counter() - started
    out.put(
        {
            "model": model_type,
            "fit_s": fit_seconds,
            "predict_s": predict_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "size_mb": len(pickle.dumps(model)) / 1e6,
            **metrics,
        }
    )


def run_isolated(model_type: str, seed: int, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=fit_and_score, args=(model_type, seed, train, test, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODEL_TYPES))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    frame, source = load_data()
    train, test = split_last_weeks(frame)
    print(f"data: {source}")
    print(
        f"train: {len(train):,} rows up to {train['timestamp'].max():%Y-%m-%d %H:%M}; "
        f"test: {len(test):,} rows, the following 4 weeks; seed {args.seed}; {os.cpu_count()} CPUs"
    )
    for model_type in args.models:
        figures = run_isolated(model_type, args.seed, train, test)
        shown = "  ".join(
            f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in figures.items()
        )
        print(shown, flush=True)


if __name__ == "__main__":
    main()
