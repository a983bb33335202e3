"""Training benchmark through the path users take: ``train()`` then ``evaluate_file()``.

These are the functions behind ``bikecount train --data FILE`` and ``bikecount evaluate --data
FILE``: holdout rule, evaluation fit, refit on every row, MLflow logging and registration, then
the registered champion scored on the month after the training data (month-ahead). Per model type
it prints the time of ``train`` (both fits), peak memory, the size of the registered model, the
holdout metrics and the month-ahead metrics (all rows, and without counter-outage rows, which no
model can forecast).

Rolling origins: ``--origin`` may be given several times (default 2021-07-10: train on every
record before it, score the 31 days from it). Uses the real Paris data when present
(``BIKECOUNT_REAL_DATA``, default ``../shared/data/paris-counters-2020-2021`` from the repo root),
else generated data. Each model type runs in its own process (its peak memory is its own) and
its own MLflow store.

    python benchmarks/train.py [rf gbm nn ensemble rf_class] [--origin 2021-06-10 ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
from pathlib import Path

import cloudpickle
import pandas as pd
from real_data import load_raw

from bikecount.cleaning import outage_mask
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.evaluate import score_model
from bikecount.inference import evaluate_file
from bikecount.models import MODEL_TYPES, get_spec
from bikecount.records import TIMESTAMP, parse_records, parse_timestamps
from bikecount.registry import Registry, bound_mlflow_requests
from bikecount.train import TrainRequest, train


def write_split(raw: pd.DataFrame, origin: str, days: int, folder: Path) -> tuple[Path, Path]:
    """Records before ``origin`` (training file) and the ``days`` days from it (evaluation)."""
    stamps = parse_timestamps(raw[TIMESTAMP])
    start = pd.Timestamp(origin, tz="Europe/Paris")
    end = start + pd.Timedelta(days=days)
    train_path = write_records(raw[(stamps < start).to_numpy()], folder / f"train_{origin}.csv")
    later = ((stamps >= start) & (stamps < end)).to_numpy()
    return Path(train_path), Path(write_records(raw[later], folder / f"next_{origin}.csv"))


def run_one(model_type: str, train_path: Path, eval_path: Path, root: Path, out) -> None:
    """Child process: ``train`` then ``evaluate_file``, as the CLI runs them."""
    settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        mlruns_dir=root / "mlruns",
        artifacts_dir=root / "artifacts",
        mlflow_tracking_uri=None,
    )
    bound_mlflow_requests(settings)
    registry = Registry(settings)
    request = TrainRequest(model_type=model_type, data_source=str(train_path))
    result = train(request, settings, registry)
    report = evaluate_file(registry, model_type, eval_path, result.version)
    model = registry.load_version(model_type, result.version)
    figures = {
        "model": model_type,
        "train_s": result.duration_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "size_mb": len(cloudpickle.dumps(model)) / 1e6,
        "rows_fit": result.rows_fit,
        **{f"holdout_{k}": v for k, v in result.metrics.items()},
        **{f"next_{k}": v for k, v in report["metrics"].items()},
    }
    if get_spec(model_type).task == "regression":
        labelled = parse_records(read_records(eval_path), require_count=True).frame
        working = labelled[~outage_mask(labelled).to_numpy()]
        clean = score_model(model, "regression", working)
        figures.update({"next_clean_r2": clean["r2"], "next_clean_rmse_log1p": clean["rmse_log1p"]})
    out.put(figures)


def run_isolated(model_type: str, train_path: Path, eval_path: Path) -> dict:
    context = mp.get_context("fork")
    queue = context.Queue()
    with tempfile.TemporaryDirectory(prefix=f"bench-{model_type}-") as folder:
        process = context.Process(
            target=run_one, args=(model_type, train_path, eval_path, Path(folder), queue)
        )
        process.start()
        result = queue.get()
        process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODEL_TYPES))
    parser.add_argument("--origin", action="append", help="first day scored (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=31, help="days scored from each origin")
    args = parser.parse_args()
    raw, source = load_raw()
    origins = args.origin or ["2021-07-10"]
    print(f"data: {source}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as folder:
        for origin in origins:
            train_path, eval_path = write_split(raw, origin, args.days, Path(folder))
            print(f"origin {origin}: train on every record before it, score {args.days} days")
            for model_type in args.models:
                figures = run_isolated(model_type, train_path, eval_path)
                shown = "  ".join(
                    f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in figures.items()
                )
                print(f"  {shown}", flush=True)


if __name__ == "__main__":
    main()
