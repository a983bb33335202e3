"""``bikecount pipeline``: the daily steps without Airflow (ingest, predict, monitor-retrain)."""

from __future__ import annotations

import contextlib
import sys
from datetime import date, datetime
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.table import Table

from bikecount.cli.console import console, fail, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.data.fetch import FetchError
from bikecount.data.io import DataFileError
from bikecount.pipeline import PipelineError
from bikecount.records import RecordError
from bikecount.registry import quiet_mlflow, shown_uri

app = typer.Typer(
    help="Run the pipeline's steps by hand: ingest a day, predict a day, monitor and retrain."
)
USER_ERRORS = (PipelineError, FetchError, DataFileError, RecordError, ValueError, OSError)

DateOption = Annotated[
    datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="The local day (YYYY-MM-DD).")
]
ApiUrlOption = Annotated[
    str | None,
    typer.Option("--api-url", help="The RegModel API [default: BIKECOUNT_PIPELINE_API_URL]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model type: rf, gbm, nn [default: BIKECOUNT_PIPELINE_MODEL_TYPE]."
    ),
]


def _day(value: datetime) -> date:
    return value.date()


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    day: DateOption,
    source: Annotated[
        str | None,
        typer.Option(
            help="'opendata', a file-drop folder (or file) of export files, or 'synthetic'. "
            "Default: Paris Open Data, else BIKECOUNT_PIPELINE_SOURCE when it is unreachable."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a stored day even by materially fewer rows (below "
            "BIKECOUNT_PIPELINE_REINGEST_MIN_SHARE of them).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate one day of records and store them, replacing that day if it was ingested before.

    A re-ingest that would shrink a stored day materially is refused (exit code 1) unless forced.
    """
    from bikecount.pipeline.ingest import ingest_day

    settings = settings_of(ctx)
    try:
        result = ingest_day(settings, _day(day), source, force=force)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print_json(result.as_dict())
        return
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


@app.command("predict")
def predict_command(
    ctx: typer.Context,
    day: DateOption,
    api_url: ApiUrlOption = None,
    model: ModelOption = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Records per request [default: BIKECOUNT_PIPELINE_BATCH_SIZE]."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Predict every known counter's hours of the day through the API and store them."""
    from bikecount.pipeline.predict import predict_day

    settings = settings_of(ctx)
    try:
        result = predict_day(settings, _day(day), api_url, model, batch_size)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print_json(result.as_dict())
        return
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
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score the day's stored predictions against its stored counts (RMSE, MAE per version)."""
    from bikecount.pipeline.predict import score_day

    settings = settings_of(ctx)
    try:
        result = score_day(settings, _day(day), model)
    except USER_ERRORS as exc:
        fail(str(exc))
    if as_json:
        print_json(result.as_dict())
        return
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
    force: Annotated[bool, typer.Option("--force", help="Retrain whatever drift says.")] = False,
    api_url: ApiUrlOption = None,
    model: ModelOption = None,
    recent_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Last stored days to check [default: BIKECOUNT_PIPELINE_RECENT_DAYS]."
        ),
    ] = None,
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
        fail(str(exc))
    except MlflowException as exc:
        shown = shown_uri(settings.tracking_uri)
        fail(f"MLflow failed: {exc.message}", hint=f"is {shown} reachable?")
    if as_json:
        print_json(result.as_dict())
        return
    drift = "[bold red]drift[/]" if result.drift_detected else "[green]no drift[/]"
    outcome = (
        f"retrained v{result.new_version} ({'promoted' if result.promoted else 'not promoted'})"
        if result.retrained
        else "not retrained"
    )
    console.print(f"{drift} (share {result.drift_share:.0%}), {outcome}")
    console.print(f"why: {result.reason}")
    console.print(f"audit row {result.audit_id}, MLflow run {result.run_id}")
