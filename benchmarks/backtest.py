"""Day-ahead benchmark through the path users take: ``run_backtest`` (``bikecount backtest``).

Each day of the period is forecast by the model ``bikecount train`` would register on the records
before it (retrained every ``--retrain-every`` days) and the counts before it, as the daily
pipeline does. Prints, per model type, the metrics over all forecast hours and without
counter-outage hours (a broken counter reports zeros that no forecast can know), the worst days
and the time taken. Real Paris data when present (``BIKECOUNT_REAL_DATA``), else generated data.

    python benchmarks/backtest.py [rf gbm nn ensemble] [--start 2021-07-10] [--end 2021-08-09]
"""

from __future__ import annotations

import argparse
import os
from datetime import date

import pandas as pd
from real_data import load_raw

from bikecount.backtest import run_backtest
from bikecount.cleaning import outage_mask
from bikecount.config import Settings
from bikecount.evaluate import regression_metrics
from bikecount.records import parse_records


def load_records() -> tuple[pd.DataFrame, str]:
    raw, source = load_raw()
    return parse_records(raw, require_count=True).frame, source


def shown(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.3f}" for k, v in metrics.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["rf", "gbm", "nn", "ensemble"])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2021, 7, 10))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2021, 8, 9))
    parser.add_argument("--retrain-every", type=int, default=7)
    args = parser.parse_args()
    records, source = load_records()
    settings = Settings(_env_file=None)
    print(
        f"data: {source}; day-ahead {args.start} to {args.end}, retrained every "
        f"{args.retrain_every} days; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    for model_type in args.models:
        result = run_backtest(
            records, model_type, args.start, args.end, settings, retrain_every=args.retrain_every
        )
        forecasts = result.forecasts
        working = ~outage_mask(forecasts).to_numpy()
        clean = regression_metrics(
            forecasts["count"].to_numpy(float)[working],
            forecasts["prediction"].to_numpy(float)[working],
        )
        worst = sorted(result.days, key=lambda day: -(day["rmse"] or 0))[:3]
        print(f"{model_type}: {result.duration_seconds:.0f} s, {len(forecasts):,} hours forecast")
        print(f"  all hours:        {shown(result.metrics)}")
        print(f"  outages excluded: {shown(clean)} ({int((~working).sum()):,} outage hours)")
        print("  worst days: " + ", ".join(f"{d['day']} (RMSE {d['rmse']:.1f})" for d in worst))


if __name__ == "__main__":
    main()
