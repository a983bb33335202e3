"""Tuning with rolling origins: hyperparameter settings of one model type, scored per origin.

Month ahead (default): the model ``bikecount train`` registers on every record before the origin
(:func:`bikecount.fitting.fit_for_deployment`, the same fitting code), scored as ``bikecount
evaluate`` scores it on the ``--days`` days from the origin. Day ahead (``--day-ahead``):
``run_backtest`` over those days, as ``bikecount backtest`` runs it. A setting is a list of
``name=value`` overrides of the type's defaults (``--set "learning_rate=0.05 max_iter=800"``;
the defaults are always scored first). Keep only what improves on every origin.

Real Paris data when present (``BIKECOUNT_REAL_DATA``), else generated data.

    python benchmarks/tune.py gbm --origin 2021-06-10 --origin 2021-07-10 \
        --set "learning_rate=0.05 max_iter=800" [--day-ahead --retrain-every 7]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date, timedelta

import pandas as pd
from real_data import load_raw

from bikecount.backtest import local_days, run_backtest
from bikecount.config import Settings
from bikecount.evaluate import score_model
from bikecount.fitting import fit_for_deployment
from bikecount.models import get_spec, parse_params
from bikecount.models.catalog import parse_assignments
from bikecount.records import parse_records


def month_ahead(
    records: pd.DataFrame, model_type: str, overrides: dict[str, str], origin: date, days: int
) -> tuple[dict[str, float], pd.DataFrame]:
    settings = Settings(_env_file=None)
    day = local_days(records)
    before = records[(day < origin).to_numpy()]
    later = records[((day >= origin) & (day < origin + timedelta(days=days))).to_numpy()]
    params = parse_params(model_type, overrides)
    model = fit_for_deployment(model_type, params, before, settings)
    metrics = score_model(model, get_spec(model_type).task, later)
    return metrics, later.assign(prediction=model.predict(later))


def day_ahead(
    records: pd.DataFrame,
    model_type: str,
    overrides: dict[str, str],
    origin: date,
    days: int,
    retrain_every: int,
) -> tuple[dict[str, float], pd.DataFrame]:
    end = origin + timedelta(days=days - 1)
    settings = Settings(_env_file=None)
    result = run_backtest(
        records,
        model_type,
        origin,
        end,
        settings,
        retrain_every=retrain_every,
        hyperparams=overrides,
    )
    return result.metrics, result.forecasts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--origin", action="append", type=date.fromisoformat)
    parser.add_argument(
        "--days", type=int, default=31, help="days scored from each origin (at most to the next)"
    )
    parser.add_argument("--set", action="append", default=[], help="overrides, space-separated")
    parser.add_argument("--no-defaults", action="store_true", help="skip the defaults' row")
    parser.add_argument("--day-ahead", action="store_true")
    parser.add_argument("--retrain-every", type=int, default=7)
    parser.add_argument("--save", help="folder for each run's forecasts (parquet)")
    args = parser.parse_args()
    raw, source = load_raw()
    records = parse_records(raw, require_count=True).frame.sort_values("timestamp")
    origins = args.origin or [date(2021, 6, 10), date(2021, 7, 10)]
    settings = ([] if args.no_defaults else [""]) + list(args.set)
    horizon = f"day ahead (retrained every {args.retrain_every} d)" if args.day_ahead else "month"
    print(f"data: {source}; {args.model}, {horizon}; {os.cpu_count()} CPUs", flush=True)
    for setting in settings:
        overrides = parse_assignments(setting.split())
        for n, origin in enumerate(origins):
            started = time.perf_counter()
            days = args.days
            if n + 1 < len(origins) and origins[n + 1] > origin:
                days = min(days, (origins[n + 1] - origin).days)
            if args.day_ahead:
                metrics, forecasts = day_ahead(
                    records, args.model, overrides, origin, days, args.retrain_every
                )
            else:
                metrics, forecasts = month_ahead(records, args.model, overrides, origin, days)
            if args.save:
                name = "_".join([args.model, "day" if args.day_ahead else "month", str(origin)])
                name += "_" + "_".join(setting.split()) if setting else ""
                forecasts.to_parquet(os.path.join(args.save, name + ".parquet"))
            print(
                f"{setting or 'defaults':45s} {origin}  R2 {metrics['r2']:.4f}  "
                f"RMSE log1p {metrics['rmse_log1p']:.4f}  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
