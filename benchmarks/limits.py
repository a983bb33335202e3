"""Training cost: the estimate that ``bikecount.models.limits`` checks, next to what a fit takes.

For a few hyperparameter settings per model type, prints the estimated model size and fitting
time, then the measured ones (the fit runs as ``train()`` runs it, in a child process; size is
the pickled model). Uses the real Paris reference data when present (``BIKECOUNT_REAL_DATA``),
else generated data. The estimate is meant to be an upper bound: measured / estimated below 1.

    python benchmarks/limits.py [rf gbm nn ensemble rf_class]
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

import pandas as pd
from real_data import load_raw

from bikecount.cleaning import drop_outages
from bikecount.isolated_fit import fit_isolated
from bikecount.models import MODEL_TYPES, build_model, parse_params
from bikecount.models.limits import estimate_cost
from bikecount.records import parse_records
from bikecount.stopping import StopToken

# Defaults, then settings that make each model much larger or slower (kept short to run).
SETTINGS: dict[str, list[dict[str, object]]] = {
    "rf": [
        {},
        {"n_estimators": 4, "max_leaf_nodes": None, "min_samples_leaf": 1, "max_samples": 1.0},
    ],
    "gbm": [{"max_iter": 100}, {"max_iter": 100, "max_leaf_nodes": 255}],
    "nn": [{"max_epochs": 3, "refit": False}, {"max_epochs": 2, "hidden_sizes": (512, 256)}],
    "ensemble": [{"gbm_max_iter": 100}],
    "rf_class": [{}],
}


def load_rows() -> tuple[pd.DataFrame, str]:
    raw, source = load_raw(("reference.csv.gz",))
    frame = parse_records(raw, require_count=True).frame.sort_values("timestamp", kind="stable")
    return drop_outages(frame), source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODEL_TYPES))
    args = parser.parse_args()
    rows, source = load_rows()
    print(f"data: {source}; {len(rows):,} rows; {os.cpu_count()} CPUs")
    for model_type in args.models:
        for overrides in SETTINGS[model_type]:
            params = parse_params(model_type, overrides)
            estimate = estimate_cost(model_type, params, len(rows))
            model = build_model(model_type, params, seed=42)
            started = time.perf_counter()
            fitted = fit_isolated(model, rows, rows["count"].to_numpy(), StopToken())
            seconds = time.perf_counter() - started
            size_mb = len(pickle.dumps(fitted)) / 1e6
            print(
                f"{model_type:8} {overrides}: size {size_mb:,.1f} MB (estimate "
                f"{estimate.model_mb:,.1f}), fit {seconds:,.1f} s (estimate "
                f"{estimate.fit_seconds:,.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
