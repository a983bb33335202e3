"""Pipeline benchmark: the daily loop replayed day by day, on the real Paris data when present.

In a working directory of its own, the script trains a gbm champion on the reference data, starts
a real MLflow server and the RegModel API, then replays every day of the current data set as the
DAGs would: ingest the day (from a file-drop folder holding the current export), score the
forecast made for it the day before, forecast the next day through ``POST /predict``; every
``--every`` days it runs monitor-and-retrain on the recent stored weeks. Each ingested day's
counter health is checked as the ingest DAG does (every counter ``unknown`` until seven weeks are
stored). It prints, per step, the time taken, and per week the decision (drift, champion R²,
retrained, promoted), the daily errors of the forecasts and the counters with a fault.
Figures are printed, never asserted.

    python benchmarks/pipeline.py [--every 7] [--recent-days 14] [--days N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from real_data import real_files
from serve import (
    _stop_on_signal,
    isolate_environment,
    plan_services,
    start_service,
    workdir_settings,
    working_directory,
)

from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.pipeline.health import check_day
from bikecount.pipeline.ingest import ingest
from bikecount.pipeline.predict import predict_day, score_day
from bikecount.pipeline.retrain import monitor_and_retrain
from bikecount.records import TIMESTAMP, parse_timestamps
from bikecount.registry import Registry, bound_mlflow_requests
from bikecount.stack.processes import ProcessManager, handling_stop_signals
from bikecount.train import TrainRequest, train


@dataclass
class Timings:
    ingest: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    predict: list[float] = field(default_factory=list)
    monitor: list[float] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=7, help="days between monitor-and-retrain")
    parser.add_argument("--recent-days", type=int, default=14, help="recent window checked")
    parser.add_argument("--days", type=int, default=None, help="replay only the first N days")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the working folder")
    return parser.parse_args(argv)


def write_data(settings: Settings, drop: Path) -> tuple[list[date], str]:
    """Reference data in the data folder, the current export in the drop folder; its days."""
    paths = real_files()
    if paths is not None:
        reference, current = paths
        write_records(read_records(reference), settings.dataset_path("reference"))
        write_records(read_records(current), drop / "current.csv")
        source = f"real Paris data ({reference.parent})"
    else:
        written = write_datasets(generate_records(SynthConfig(start="2020-09-01")), settings)
        write_records(written["current"][1], drop / "current.csv")
        source = "generated data (SynthConfig defaults; real data not found)"
    stamps = parse_timestamps(read_records(drop / "current.csv")[TIMESTAMP]).dropna()
    days = sorted(set(stamps.dt.date))
    return days[1:-1], source  # first and last days may be partial


def timed(bucket: list[float], step, *args, **kwargs):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    result = step(*args, **kwargs)
    bucket.append(time.perf_counter() - started)
    return result


def replay(
    settings: Settings,
    registry: Registry,
    api_url: str,
    days: list[date],
    args: argparse.Namespace,
) -> None:
    timings, drop = Timings(), settings.data_dir.parent / "drop"
    errors: list[tuple[date, int, float, float]] = []
    print("day        | forecast version | RMSE  | MAE   | faults | decision")
    for index, day in enumerate(days):
        ingested = timed(timings.ingest, ingest, settings, day, drop)
        checked = timed(timings.health, check_day, settings, day)
        scored = timed(timings.score, score_day, settings, day)
        for version, values in scored.errors.items():
            errors.append((day, version, values["rmse"], values["mae"]))
        forecast = timed(timings.predict, predict_day, settings, day + timedelta(days=1), api_url)
        decision = ""
        if (index + 1) % args.every == 0:
            result = timed(timings.monitor, monitor_and_retrain, settings, registry, api_url)
            r2 = (result.champion_metrics or {}).get("r2")
            counts = "drifted" if result.counts_drifted else "stable"
            decision = (
                f"drift {'yes' if result.drift_detected else 'no'} (share "
                f"{result.drift_share:.2f}, counts {counts})"
                f", champion v{result.champion_version} R² {r2 if r2 is None else round(r2, 3)}"
                + (
                    f" -> retrained v{result.new_version}, "
                    f"{'promoted' if result.promoted else 'not promoted'}"
                    if result.retrained
                    else " -> not retrained"
                )
            )
        scored_now = [e for e in errors if e[0] == day]
        shown = " ".join(f"v{v}" for _, v, _, _ in scored_now) or "-"
        rmse = f"{scored_now[0][2]:5.1f}" if scored_now else "    -"
        mae = f"{scored_now[0][3]:5.1f}" if scored_now else "    -"
        faults = len(checked.faults)
        print(f"{day} | {shown:16} | {rmse} | {mae} | {faults:6} | {decision}", flush=True)
        assert ingested.rows_written > 0 and forecast.rows > 0
    print_summary(timings, errors)


def print_summary(timings: Timings, errors: list[tuple[date, int, float, float]]) -> None:
    print()
    for name in ("ingest", "health", "score", "predict", "monitor"):
        values = getattr(timings, name)
        if values:
            print(
                f"{name:8} {len(values):3} runs: median {statistics.median(values):6.2f} s, "
                f"max {max(values):6.2f} s"
            )
    if errors:
        frame = pd.DataFrame(errors, columns=["day", "version", "rmse", "mae"])
        frame["month"] = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m")
        print()
        print("daily forecast errors by month (mean of the days):")
        print(frame.groupby("month")[["rmse", "mae"]].mean().round(2).to_string())
        print()
        print("daily forecast errors by model version:")
        print(frame.groupby("version")[["rmse", "mae"]].agg(["mean", "count"]).round(2).to_string())


def run(args: argparse.Namespace, root: Path) -> None:
    settings = workdir_settings(root).model_copy(
        update={
            "pipeline_db_url": f"sqlite:///{root / 'pipeline.db'}",
            "reports_dir": root / "reports",
            "pipeline_recent_days": args.recent_days,
        }
    )
    days, source = write_data(settings, root / "drop")
    days = days[: args.days] if args.days else days
    print(f"data: {source}; replaying {len(days)} days from {days[0]} to {days[-1]}", flush=True)
    mlflow_spec, api_spec, settings = plan_services(settings)
    bound_mlflow_requests(settings)  # before the process manager's threads start
    registry = Registry(settings)
    with handling_stop_signals(_stop_on_signal), ProcessManager(settings.logs_dir) as manager:
        start_service(manager, mlflow_spec)
        started = time.perf_counter()
        champion = train(TrainRequest(model_type="gbm"), settings, registry)
        print(
            f"  gbm champion v{champion.version} trained in {time.perf_counter() - started:.0f} s "
            f"(holdout R² {champion.metrics['r2']:.3f})",
            flush=True,
        )
        start_service(manager, api_spec)
        replay(settings, registry, api_spec.url, days, args)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    isolate_environment()
    load_at_start, started = os.getloadavg(), time.perf_counter()
    try:
        with working_directory(args.workdir) as root:
            run(args, root)
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}): every process stopped", file=sys.stderr)
        raise SystemExit(130) from None
    print(
        f"\nmachine: {os.cpu_count()} CPUs; load average at start "
        f"{', '.join(f'{x:.2f}' for x in load_at_start)}, at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; total "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
