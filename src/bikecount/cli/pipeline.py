"""``bikecount pipeline``: the daily steps without Airflow (ingest, health, predict,
monitor-retrain)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, Protocol, TypeVar

import typer
from mlflow.exceptions import MlflowException
from rich.markup import escape
from rich.table import Table

from bikecount.cli.console import console, fail_mlflow, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.cli.failures import fail_for
from bikecount.cli.options import JsonOption, PipelineModelOption
from bikecount.data.fetch import FetchError
from bikecount.data.io import DataFileError
from bikecount.pipeline import PipelineError
from bikecount.records import RecordError
from bikecount.registry import quiet_mlflow

if TYPE_CHECKING:  # the steps themselves are imported by their command, when it runs
    from bikecount.pipeline.health import HealthResult
    from bikecount.pipeline.ingest import IngestResult
    from bikecount.pipeline.predict import PredictResult, ScoreResult
    from bikecount.pipeline.retrain import RetrainResult

app = typer.Typer(
    help="Run the pipeline's steps by hand: ingest a day, check its counters' health, predict a "
    "day, monitor and retrain."
)
USER_ERRORS = (PipelineError, FetchError, DataFileError, RecordError, ValueError, OSError)

DateOption = Annotated[
    datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="The local day (YYYY-MM-DD).")
]
ApiUrlOption = Annotated[
    str | None,
    typer.Option("--api-url", help="The RegModel API [default: BIKECOUNT_PIPELINE_API_URL]."),
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        help="'opendata', a file-drop folder (or file) of export files, or 'synthetic'. "
        "Default: Paris Open Data, else BIKECOUNT_PIPELINE_SOURCE when it is unreachable."
    ),
]
ForceIngestOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace a stored day even by materially fewer rows (below "
        "BIKECOUNT_PIPELINE_REINGEST_MIN_SHARE of them).",
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(min=1, help="Records per request [default: BIKECOUNT_PIPELINE_BATCH_SIZE]."),
]
ForceRetrainOption = Annotated[bool, typer.Option("--force", help="Retrain whatever drift says.")]
RecentDaysOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="Last stored days to check [default: BIKECOUNT_PIPELINE_RECENT_DAYS]."
    ),
]


class StepResult(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


Result = TypeVar("Result", bound=StepResult)
Params = ParamSpec("Params")


def _day(value: datetime) -> date:
    return value.date()


def _run_step(
    step: Callable[Params, Result], *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """``step(*args, **kwargs)``; a user's error (bad input, a source or store failing) ends
    the command with its message."""
    try:
        return step(*args, **kwargs)
    except USER_ERRORS as exc:
        fail_for(exc)


def _report(result: Result, as_json: bool, show: Callable[[Result], None]) -> None:
    """The step's result as one JSON object, or for people as ``show`` prints it."""
    if as_json:
        print_json(result.as_dict())
    else:
        show(result)


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    day: DateOption,
    source: SourceOption = None,
    force: ForceIngestOption = False,
    as_json: JsonOption = False,
) -> None:
    """Validate one day of records and store them, replacing that day if it was ingested before.

    A re-ingest that would shrink a stored day materially is refused (exit code 1) unless forced.
    """
    from bikecount.pipeline.ingest import ingest_day

    result = _run_step(ingest_day, settings_of(ctx), _day(day), source, force=force)
    _report(result, as_json, _print_ingested)


def _print_ingested(result: IngestResult) -> None:
    console.print(
        f"[bold]{result.day}[/] from {result.source}: {result.rows_in:,} rows in, "
        f"[green]{result.rows_written:,} stored[/], [red]{result.rows_rejected:,} rejected[/]"
    )
    if result.note:
        console.print(f"[yellow]{result.note}[/]")
    if result.reasons:
        table = Table(title="rejected rows")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, count in result.reasons.items():
            table.add_row(reason, f"{count:,}")
        console.print(table)


@app.command("health")
def health_command(ctx: typer.Context, day: DateOption, as_json: JsonOption = False) -> None:
    """Check every counter's health on a stored day, store it, and alert its faults.

    Faults go to BIKECOUNT_ALERTMANAGER_URL when it is set and the day is the latest stored one.
    Exits 0 whatever the counters' state (a report); 1 when the day has no stored counts or
    Alertmanager cannot take the alerts.
    """
    from bikecount.pipeline.health import check_day

    result = _run_step(check_day, settings_of(ctx), _day(day))
    _report(result, as_json, _print_health)


def _print_health(result: HealthResult) -> None:
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items()))
    console.print(f"[bold]{result.day}[/]: {result.counters} counters checked ({statuses})")
    if result.faults:
        table = Table(title="counters with a fault")
        for column in ("counter", "status", "since", "reason"):
            table.add_column(column)
        for fault in result.faults:
            since = (fault["since"] or "")[:16].replace("T", " ")
            table.add_row(escape(fault["counter"]), fault["status"], since, escape(fault["reason"]))
        console.print(table)
    console.print(f"alerts {result.alerts}")


@app.command("predict")
def predict_command(
    ctx: typer.Context,
    day: DateOption,
    api_url: ApiUrlOption = None,
    model: PipelineModelOption = None,
    batch_size: BatchSizeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict every known counter's hours of the day through the API and store them."""
    from bikecount.pipeline.predict import predict_day

    result = _run_step(predict_day, settings_of(ctx), _day(day), api_url, model, batch_size)
    _report(result, as_json, _print_predicted)


def _print_predicted(result: PredictResult) -> None:
    versions = ", ".join(f"v{v}" for v in result.versions)
    console.print(
        f"[bold]{result.day}[/]: {result.rows:,} predictions for {result.counters} counters "
        f"by {result.model_type} {versions}"
    )
    _print_errors(result.errors)


@app.command("score")
def score_command(
    ctx: typer.Context,
    day: DateOption,
    model: PipelineModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the day's stored predictions against its stored counts (RMSE, MAE per version)."""
    from bikecount.pipeline.predict import score_day

    result = _run_step(score_day, settings_of(ctx), _day(day), model)
    _report(result, as_json, _print_scored)


def _print_scored(result: ScoreResult) -> None:
    if result.reason:
        console.print(f"[bold]{result.day}[/] not scored: {result.reason}")
    _print_errors(result.errors)


def _print_errors(errors: dict[int, dict[str, float]]) -> None:
    for version, values in errors.items():
        console.print(
            f"  v{version}: RMSE {values['rmse']:.2f}, MAE {values['mae']:.2f} "
            f"on {int(values['n']):,} counted hours"
        )


@app.command("monitor-retrain")
def monitor_retrain_command(
    ctx: typer.Context,
    force: ForceRetrainOption = False,
    api_url: ApiUrlOption = None,
    model: PipelineModelOption = None,
    recent_days: RecentDaysOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check drift and the champion on recent stored counts; retrain through the API if due."""
    from bikecount.pipeline.retrain import monitor_and_retrain

    quiet_mlflow()
    settings = settings_of(ctx)
    # MLflow writes "View run ..." links to stdout; with --json, stdout holds the JSON only.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet:
            result = monitor_and_retrain(
                settings, registry_of(ctx), api_url, force, model, recent_days=recent_days
            )
    except USER_ERRORS as exc:
        fail_for(exc)
    except MlflowException as exc:
        fail_mlflow(exc, settings.tracking_uri)
    _report(result, as_json, _print_monitored)


def _print_monitored(result: RetrainResult) -> None:
    drift = "[bold red]drift[/]" if result.drift_detected else "[green]no drift[/]"
    outcome = (
        f"retrained v{result.new_version} ({'promoted' if result.promoted else 'not promoted'})"
        if result.retrained
        else "not retrained"
    )
    console.print(f"{drift} (share {result.drift_share:.0%}), {outcome}")
    console.print(f"why: {result.reason}")
    console.print(f"audit row {result.audit_id}, MLflow run {result.run_id}")
