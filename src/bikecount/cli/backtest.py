"""``bikecount backtest``: day-ahead forecasts replayed over past days, with a rolling origin."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bikecount.backtest import BACKTEST, BacktestResult, log_backtest, run_backtest
from bikecount.cli.console import console, err_console, fail, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.cli.modeling import USER_ERRORS, JsonOption, ModelOption
from bikecount.data.io import read_records, write_records
from bikecount.models.catalog import parse_assignments
from bikecount.records import parse_records
from bikecount.registry import quiet_mlflow


def backtest_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="A labelled record file (.csv, .csv.gz, parquet).")],
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="First local day to forecast.")
    ],
    end: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="Last local day to forecast.")
    ],
    model: ModelOption = "gbm",
    retrain_every: Annotated[
        int, typer.Option(min=1, help="Days between retrainings on the records before the day.")
    ] = 7,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyperparameter override NAME=VALUE (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write each forecast: input columns + prediction."),
    ] = None,
    log_to_mlflow: Annotated[
        bool,
        typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow."),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Forecast each day from --start to --end as the daily pipeline would have.

    Each day D is forecast after midnight by a model trained only on the records before D
    (retrained every --retrain-every days, with the training code of `bikecount train`) and
    the counts known before D. Prints RMSE, MAE, R² and RMSE of log1p, overall and per day.
    """
    quiet_mlflow()
    settings = settings_of(ctx)
    first, last = start.date(), end.date()
    try:
        raw = read_records(data)
        parsed = parse_records(raw, require_count=True)
        if parsed.frame.empty:
            raise ValueError(f"{data}: no valid labelled records")
        result = _run_with_progress(
            parsed.frame, model, first, last, retrain_every, param, settings, as_json
        )
        if log_to_mlflow:
            result.run_id = log_backtest(result, settings, registry_of(ctx), str(data))
    except USER_ERRORS as exc:
        fail(str(exc))
    if output is not None:
        rows = raw.iloc[result.forecasts.index].copy()
        rows["prediction"] = result.forecasts["prediction"].round(3).to_numpy()
        write_records(rows, output)
    if as_json:
        print_json(result.summary())
        return
    _print_result(result, output, settings.mlflow_name(BACKTEST))


def _run_with_progress(
    records, model: str, first: date, last: date, every: int, param, settings, quiet: bool
) -> BacktestResult:
    hyperparams = parse_assignments(param or [])
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"backtest {model}", total=(last - first).days + 1, note="")

        def advance(day: date, done: int, total: int, retrained: bool) -> None:
            note = f"{day} (retrained)" if retrained else str(day)
            progress.update(task, completed=done, note=note)

        return run_backtest(
            records, model, first, last, settings,
            retrain_every=every, hyperparams=hyperparams, on_day=advance,
        )  # fmt: skip


def _print_result(result: BacktestResult, output: Path | None, experiment: str) -> None:
    console.print(
        f"[bold]{result.model_type}[/] day-ahead backtest {result.start} to {result.end}: "
        f"{len(result.days)} days, retrained on {len(result.retrained_on)} of them "
        f"(every {result.retrain_every}), {result.duration_seconds:.0f} s"
    )
    table = Table(title="day-ahead forecast errors")
    for column in ("day", "rows", "rmse", "mae", "r2", "rmse_log1p"):
        table.add_column(column, justify="right")
    for day in result.days:
        table.add_row(
            day["day"],
            str(day["rows"]),
            *(_shown(day[k]) for k in ("rmse", "mae", "r2", "rmse_log1p")),
        )
    metrics = result.summary()["metrics"]
    table.add_row(
        "[bold]all[/]",
        str(len(result.forecasts)),
        *(_shown(metrics[k]) for k in ("rmse", "mae", "r2", "rmse_log1p")),
    )
    console.print(table)
    for counter, rmse in list(result.per_counter_rmse.items())[:5]:
        console.print(f"  RMSE {rmse:8.2f}  {counter}")
    if output is not None:
        console.print(f"forecasts written to {output}")
    if result.run_id:
        console.print(f"logged to MLflow run {result.run_id} (experiment {experiment})")


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
