"""``bikecount train|evaluate|predict|models``: the model life from the shell."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from mlflow.exceptions import MlflowException
from rich.table import Table

from bikecount.cli.console import console, err_console, fail, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.cli.failures import fail_for
from bikecount.cli.options import (
    IntervalOption,
    JsonOption,
    LabelledDataOption,
    ModelOption,
    ParamOption,
)
from bikecount.config import Env, Settings
from bikecount.data.io import DataFileError
from bikecount.evaluate import finite_metrics
from bikecount.inference import evaluate_file, predict_file
from bikecount.intervals import DEFAULT_LEVEL
from bikecount.models import MODEL_TYPES, HyperparameterError, UnknownModelTypeError
from bikecount.models.catalog import parse_assignments
from bikecount.records import RecordError
from bikecount.registry import (
    ModelNotFoundError,
    Registry,
    RegistryUnavailableError,
    quiet_mlflow,
    shown_uri,
)
from bikecount.stopping import TrainingStoppedError
from bikecount.train import TrainRequest, TrainResult, train

USER_ERRORS = (
    UnknownModelTypeError,
    HyperparameterError,
    DataFileError,
    RecordError,
    ModelNotFoundError,
    RegistryUnavailableError,
    ValueError,
    MlflowException,
)

# As a shell reports a command ended by Ctrl-C (128 + SIGINT).
STOPPED_EXIT_CODE = 130

ENVS: dict[str, Env] = {env: env for env in get_args(Env)}

TrainDataOption = Annotated[
    str, typer.Option(help="Data set name (reference, current, test_sample) or a file path.")
]
EnvOption = Annotated[str, typer.Option(help="dev (local artifacts) or prod (GCS).")]
TestModeOption = Annotated[
    bool, typer.Option("--test-mode", help="Train on test_sample.csv with fast settings.")
]
HoldoutFromOption = Annotated[
    datetime | None,
    typer.Option(
        "--holdout-from",
        formats=["%Y-%m-%d"],
        help="Hold out the records from this local day on (default: the last "
        "BIKECOUNT_HOLDOUT_DAYS days).",
    ),
]
RefitOption = Annotated[
    bool,
    typer.Option(
        "--refit/--no-refit",
        help="Refit on every row, holdout included, for the registered model (default). "
        "--no-refit registers the evaluation fit: faster, but it never saw the holdout days.",
    ),
]


def train_command(
    ctx: typer.Context,
    model: ModelOption = "gbm",
    data: TrainDataOption = "reference",
    env: EnvOption = "",
    param: ParamOption = None,
    test_mode: TestModeOption = False,
    holdout_from: HoldoutFromOption = None,
    refit: RefitOption = True,
    as_json: JsonOption = False,
) -> None:
    """Train a model, score it on a temporal holdout, refit it on every row, log it to MLflow and
    register it.

    The holdout is the last BIKECOUNT_HOLDOUT_DAYS days (the last 20% of the period on short data).
    The new version becomes champion only when it beats the current one on rows neither was
    fitted on. Ctrl-C (or the time limit, BIKECOUNT_TRAIN_TIME_LIMIT_SECONDS) stops either fit:
    the MLflow run is marked KILLED (FAILED for the time limit) and the champion is unchanged
    (exit code 130).
    """
    quiet_mlflow()
    settings = settings_of(ctx)
    try:
        request = TrainRequest(
            model_type=model,
            data_source=data,
            env=_env(env, settings),
            hyperparams=parse_assignments(param or []),
            test_mode=test_mode,
            holdout_from=holdout_from.date() if holdout_from else None,
            refit=refit,
        )
        result = _train_showing_stage(request, settings, registry_of(ctx), quiet=as_json)
    except USER_ERRORS as exc:
        fail_for(exc)
    except TrainingStoppedError as exc:
        run = f"run {exc.run_id} marked {exc.run_status}" if exc.run_id else "no run was started"
        fail(f"training stopped: {exc}; {run}; the champion is unchanged", code=STOPPED_EXIT_CODE)
    except KeyboardInterrupt:  # before the run started: nothing to mark
        fail("interrupted before training started", code=STOPPED_EXIT_CODE)
    if as_json:
        print_json(_train_summary(result))
        return
    _print_train_result(result)


def _train_showing_stage(
    request: TrainRequest, settings: Settings, registry: Registry, quiet: bool
) -> TrainResult:
    """:func:`train`, its current stage in a status line (none when ``quiet``)."""
    if quiet:
        return train(request, settings, registry)
    with console.status("training...") as status:
        return train(request, settings, registry, on_stage=lambda s: status.update(s))


def _env(value: str, settings: Settings) -> Env:
    if not value:
        return settings.env
    env = ENVS.get(value)
    if env is None:
        fail(f"--env {value!r}: expected dev or prod")
    return env


def _train_summary(result: TrainResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "model_type": result.model_type,
        "model_name": result.model_name,
        "version": result.version,
        "model_uri": result.model_uri,
        "champion": result.champion,
        "champion_reason": result.champion_reason,
        "metrics": finite_metrics(result.metrics, digits=4),
        "rows_train": result.rows_train,
        "rows_holdout": result.rows_holdout,
        "rows_fit": result.rows_fit,
        "trained_until": result.trained_until,
        "refit": result.refit,
        "rows_dropped": result.rows_dropped,
        "duration_seconds": result.duration_seconds,
    }


def _print_train_result(result: TrainResult) -> None:
    if result.rows_dropped:
        err_console.print(f"[yellow]dropped {result.rows_dropped:,} invalid rows:[/]")
        for reason, count in result.drop_reasons.items():
            err_console.print(f"  {count:,} × {reason}")
    crown = "[green]champion[/]" if result.champion else "[yellow]not champion[/]"
    console.print(
        f"[bold]{result.model_name}[/] v{result.version} ({crown}: {result.champion_reason})"
    )
    console.print(
        f"run {result.run_id}: scored on {result.rows_holdout:,} held-out records after fitting "
        f"{result.rows_train:,}; "
        + (
            f"registered model refitted on all {result.rows_fit:,}"
            if result.refit
            else "registered the evaluation fit (--no-refit)"
        )
        + f", knows up to {result.trained_until}; {result.duration_seconds:.1f} s"
    )
    console.print(_metrics_table(result.metrics))


def _metrics_table(metrics: Mapping[str, float | None], title: str = "holdout metrics") -> Table:
    """Metrics as a table; an undefined one (None or NaN: R² on one row) reads n/a."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        shown = "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"
        table.add_row(name, shown)
    return table


def evaluate_command(
    ctx: typer.Context,
    data: LabelledDataOption,
    model: ModelOption = "gbm",
    version: Annotated[
        int | None, typer.Option(help="Version to score (default: champion).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score the champion (or a given version) on any labelled file."""
    try:
        report = evaluate_file(registry_of(ctx), model, data, version)
    except USER_ERRORS as exc:
        fail_for(exc)
    report["metrics"] = finite_metrics(report["metrics"], digits=4)
    if as_json:
        print_json(report)
        return
    console.print(f"[bold]{model}[/] v{report['version']} on {data} ({report['rows']:,} records)")
    console.print(_metrics_table(report["metrics"], title="metrics on the file"))
    worst = list(report.get("per_counter_rmse", {}).items())[:5]
    for counter, rmse in worst:
        console.print(f"  RMSE {rmse:8.2f}  {counter}")


def predict_command(
    ctx: typer.Context,
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Raw record file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write predictions.")],
    model: ModelOption = "gbm",
    version: Annotated[int | None, typer.Option(help="Version (default: champion).")] = None,
    interval: IntervalOption = DEFAULT_LEVEL,
) -> None:
    """Write predictions for a raw record file (input columns plus ``prediction``, and
    ``lower``/``upper`` when the model carries an interval calibration)."""
    try:
        written = predict_file(registry_of(ctx), model, input_path, output, version, interval)
    except USER_ERRORS as exc:
        fail_for(exc)
    intervals = (
        f"with {written.interval:.0%} intervals"
        if written.interval is not None
        else "without intervals (the version carries no calibration: retrain for them)"
    )
    console.print(
        f"wrote {written.rows:,} predictions of {model} v{written.version} to {output}, {intervals}"
    )


def models_command(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only this model type.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List registered versions with their holdout metrics and the champion."""
    settings = settings_of(ctx)
    try:
        types = [model] if model else list(MODEL_TYPES)
        registry = registry_of(ctx)
        versions = [v for t in types for v in registry.list_versions(t)]
    except USER_ERRORS as exc:
        fail_for(exc)
    if as_json:
        print_json([v.as_dict() for v in versions])
        return
    if not versions:
        console.print("no registered models yet: train one with `bikecount train --model gbm`")
        return
    table = Table(title=f"registered models ({shown_uri(settings.tracking_uri)})")
    for column in ("model", "version", "champion", "test mode", "env", "metrics"):
        table.add_column(column)
    for v in versions:
        shown = ", ".join(f"{k}={val:.3f}" for k, val in sorted(v.metrics.items()))
        table.add_row(
            v.model_type, str(v.version), "★" if v.champion else "", str(v.test_mode),
            v.env or "", shown,
        )  # fmt: skip
    console.print(table)
