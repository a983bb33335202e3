"""``bikecount backtest``: day-ahead forecasts replayed over past days, with a rolling origin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bikecount.backtest import BACKTEST, BacktestResult, log_backtest, run_backtest
from bikecount.cli.console import console, err_console, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.cli.failures import fail_for
from bikecount.cli.modeling import USER_ERRORS
from bikecount.cli.options import (
    IntervalOption,
    JsonOption,
    LabelledDataOption,
    ParamOption,
    PipelineModelOption,
)
from bikecount.data.io import read_records, write_records
from bikecount.intervals import DEFAULT_LEVEL
from bikecount.models.catalog import parse_assignments
from bikecount.records import parse_records
from bikecount.registry import quiet_mlflow

FirstDayOption = Annotated[
    datetime, typer.Option(formats=["%Y-%m-%d"], help="First local day to forecast.")
]
LastDayOption = Annotated[
    datetime, typer.Option(formats=["%Y-%m-%d"], help="Last local day to forecast.")
]
RetrainEveryOption = Annotated[
    int, typer.Option(min=1, help="Days between retrainings on the records before the day.")
]
ForecastsOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write each forecast: input columns + prediction, lower and upper.",
    ),
]
MlflowOption = Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")]


def backtest_command(
    ctx: typer.Context,
    data: LabelledDataOption,
    start: FirstDayOption,
    end: LastDayOption,
    model: PipelineModelOption = None,
    retrain_every: RetrainEveryOption = 7,
    param: ParamOption = None,
    interval: IntervalOption = DEFAULT_LEVEL,
    output: ForecastsOption = None,
    log_to_mlflow: MlflowOption = True,
    as_json: JsonOption = False,
) -> None:
    """Forecast each day from --start to --end as the daily pipeline would have.

    Each day D is forecast after midnight by a model trained only on the records before D
    (retrained every --retrain-every days, with the training code of `bikecount train`) and
    the counts known before D. Prints RMSE, MAE, R² and RMSE of log1p, overall and per day,
    and how often the counts fell inside their --interval intervals (calibrated on the
    residuals of the backtest's own forecasts of the days before each day).
    """
    quiet_mlflow()
    settings = settings_of(ctx)
    model = model or settings.pipeline_model_type
    first, last = start.date(), end.date()
    try:
        raw, records = _read_labelled(data)
        backtest = partial(
            run_backtest,
            records,
            model,
            first,
            last,
            settings,
            retrain_every=retrain_every,
            hyperparams=parse_assignments(param or []),
            interval=interval,
        )
        result = _run_with_progress(backtest, f"backtest {model}", (last - first).days + 1, as_json)
        if log_to_mlflow:
            result.run_id = log_backtest(result, settings, registry_of(ctx), str(data))
    except USER_ERRORS as exc:
        fail_for(exc)
    if output is not None:
        _write_forecasts(raw, result, output)
    if as_json:
        print_json(result.summary())
        return
    _print_result(result, output, settings.mlflow_name(BACKTEST))


def _read_labelled(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records of ``path`` as read, and the valid ones with a count, parsed."""
    raw = read_records(path)
    parsed = parse_records(raw, require_count=True)
    if parsed.frame.empty:
        raise ValueError(f"{path}: no valid labelled records")
    return raw, parsed.frame


def _run_with_progress(
    backtest: Callable[..., BacktestResult], title: str, days: int, quiet: bool
) -> BacktestResult:
    """``backtest(on_day=...)`` with a progress bar of its days on stderr (none when ``quiet``)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=quiet, transient=False) as progress:
        task = progress.add_task(title, total=days, note="")

        def advance(day: date, done: int, total: int, retrained: bool) -> None:
            note = f"{day} (retrained)" if retrained else str(day)
            progress.update(task, completed=done, note=note)

        return backtest(on_day=advance)


def _write_forecasts(raw: pd.DataFrame, result: BacktestResult, output: Path) -> None:
    """The forecast rows as read, plus their ``prediction``, ``lower`` and ``upper``, to
    ``output``."""
    rows = raw.iloc[result.forecasts.index].copy()
    for column in ("prediction", "lower", "upper"):
        rows[column] = result.forecasts[column].round(3).to_numpy()
    write_records(rows, output)


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
    console.print(
        f"{result.metrics['interval_level']:.0%} intervals: "
        f"{_shown_share(metrics.get('interval_coverage'))} of the counts inside, mean width "
        f"{_shown(metrics.get('interval_width_log1p'))} in log1p units"
    )
    for counter, rmse in list(result.per_counter_rmse.items())[:5]:
        console.print(f"  RMSE {rmse:8.2f}  {counter}")
    if output is not None:
        console.print(f"forecasts written to {output}")
    if result.run_id:
        console.print(f"logged to MLflow run {result.run_id} (experiment {experiment})")


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _shown_share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
