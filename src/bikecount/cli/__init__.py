"""The ``bikecount`` command line: a thin Typer shell over the library."""

from __future__ import annotations

import logging

import typer

from bikecount.cli.alerts import app as alerts_app
from bikecount.cli.backtest import backtest_command
from bikecount.cli.context import Invocation
from bikecount.cli.data import app as data_app
from bikecount.cli.failures import ReportingGroup
from bikecount.cli.health import health_command
from bikecount.cli.modeling import (
    evaluate_command,
    models_command,
    predict_command,
    train_command,
)
from bikecount.cli.monitor import monitor_command
from bikecount.cli.pipeline import app as pipeline_app
from bikecount.cli.stack import up_command

app = typer.Typer(
    name="bikecount",
    help="Predict hourly bike traffic at Paris counters: data, training, registry, serving.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    # Errors no command handled end in one line (cli.failures), so Typer's traceback never shows.
    cls=ReportingGroup,
)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(alerts_app, name="alerts")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("backtest")(backtest_command)
app.command("predict")(predict_command)
app.command("models")(models_command)
app.command("up")(up_command)
app.command("monitor")(monitor_command)
app.command("health")(health_command)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show debug logs, and the traceback of an error."
    ),
) -> None:
    """bikecount: Paris bike counter predictions, from data to served models."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # One per call: CliRunner and tests call the app many times in one process, each with
    # its own environment.
    ctx.obj = Invocation()
