"""``bikecount up``: the whole stack on this machine, no Docker needed."""

from __future__ import annotations

import importlib.util
import json
import logging
import shlex
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from bikecount.api.schemas import EXAMPLE_RECORD
from bikecount.cli.console import console, err_console, fail
from bikecount.cli.context import settings_of
from bikecount.cli.log_filter import LogFilter
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.monitoring.alerting import receiver_kinds, write_alertmanager_config
from bikecount.records import COORDINATES, COUNTER, TIMESTAMP, to_export_columns
from bikecount.registry import quiet_mlflow
from bikecount.stack import (
    BootstrapHooks,
    BootstrapReport,
    PortInUseError,
    ServiceFailedError,
    StackError,
    StackHooks,
    StopRequested,
    run_stack,
)
from bikecount.stack.processes import LineCallback
from bikecount.stack.prometheus import write_prometheus_config
from bikecount.stack.services import (
    AIRFLOW,
    AIRFLOW_INSTALL_HINT,
    ALERTMANAGER,
    ALERTMANAGER_INSTALL_HINT,
    CLASSMODEL,
    DASHBOARD,
    MLFLOW,
    PROMETHEUS,
    PROMETHEUS_INSTALL_HINT,
    REGMODEL,
    ServiceSpec,
    StackOptions,
    alertmanager_config_file,
    alertmanager_program,
    build_services,
    dags_folder,
)
from bikecount.train import TrainResult

SERVICE_STYLES = {
    MLFLOW: "cyan",
    REGMODEL: "green",
    CLASSMODEL: "magenta",
    PROMETHEUS: "yellow",
    ALERTMANAGER: "red",
    AIRFLOW: "blue",
    DASHBOARD: "bright_red",
}
# The in-process MLflow client (first models) chatters ("🏃 View run ...", "Waiting up to 300
# seconds ..."): to this log file, unless --verbose.
STACK_LOG = "bikecount-up.log"
PREFIX_WIDTH = max(len(name) for name in SERVICE_STYLES)


def print_log_line(service: str, line: str) -> None:
    """``mlflow     | line``, the prefix coloured per service; the line is shown as is."""
    prefix = Text(f"{service:<{PREFIX_WIDTH}} | ", style=SERVICE_STYLES.get(service, "white"))
    console.print(prefix + Text.from_ansi(line), soft_wrap=True, highlight=False)


def filtered_printer(log_filter: LogFilter) -> LineCallback:
    """:func:`print_log_line` for the lines ``log_filter`` shows (warnings and errors)."""

    def print_if_shown(service: str, line: str) -> None:
        if log_filter.show(service, line):
            print_log_line(service, line)

    return print_if_shown


def print_background(message: str) -> None:
    console.print(f"[bold]background:[/] {escape(message)}")


def route_mlflow_logs(settings: Settings) -> None:
    """Send this process's MLflow client messages to ``logs/bikecount-up.log`` instead."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.logs_dir / STACK_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    mlflow_logger = logging.getLogger("mlflow")
    for old in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(old)
    mlflow_logger.addHandler(handler)
    mlflow_logger.propagate = False


@contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Python-level stdout and stderr appended to ``path`` meanwhile (None: left alone).

    The consoles are pinned to the terminal first, so the progress display stays on screen.
    """
    if path is None:
        yield
        return
    console.file, err_console.file = sys.stdout, sys.stderr
    with path.open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        yield


class TrainingProgress:
    """The Rich progress display of the first models, fed by the bootstrap's callbacks.

    Args:
        chatter_log: where what MLflow prints while a first model trains goes (None: on screen).
    """

    def __init__(self, chatter_log: Path | None = None) -> None:
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.failures: dict[str, str] = {}
        self.chatter_log = chatter_log

    def hooks(self) -> BootstrapHooks:
        return BootstrapHooks(
            on_message=lambda message: console.print(f"[bold]bootstrap:[/] {escape(message)}"),
            on_training=self.start,
            on_stage=self.stage,
            on_trained=self.done,
            chatter=partial(output_to, self.chatter_log),
        )

    def start(self, model_types: Sequence[str]) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[model]}", table_column=Column(width=9, no_wrap=True)),
            BarColumn(bar_width=10),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, ratio=1)),
            TimeElapsedColumn(),
            console=console,
        )
        for model_type in model_types:
            self.tasks[model_type] = self.progress.add_task(
                "waiting", total=1, model=model_type, start=False
            )
        self.progress.start()

    def stage(self, model_type: str, stage: str) -> None:
        if self.progress is not None:
            self.progress.start_task(self.tasks[model_type])
            self.progress.update(self.tasks[model_type], description=escape(stage))

    def done(self, model_type: str, result: TrainResult | None, error: Exception | None) -> None:
        if self.progress is None:
            return
        if result is not None:
            metrics = ", ".join(f"{k} {v:.3g}" for k, v in list(result.metrics.items())[:2])
            description = f"[green]v{result.version} registered[/] ({metrics})"
        else:
            self.failures[model_type] = str(error)
            description = "[red]failed[/] (see below)"
        self.progress.update(self.tasks[model_type], description=description, completed=1)
        if all(self.progress.tasks[i].finished for i in self.tasks.values()):
            self.stop()

    def stop(self) -> None:
        """Close the display (also on Ctrl-C) and say what failed, in full."""
        if self.progress is None:
            return
        self.progress.stop()
        self.progress = None
        for model_type, error in self.failures.items():
            err_console.print(f"[red]first {model_type} model failed:[/] {escape(error)}")


def print_starting(spec: ServiceSpec) -> None:
    console.print(f"[bold]starting {spec.name}[/] on {spec.url} ...")


def print_healthy(spec: ServiceSpec) -> None:
    console.print(f"[bold green]{spec.name} is up[/] ({spec.health_url})")


def print_ready(
    settings: Settings, services: Sequence[ServiceSpec], report: BootstrapReport | None
) -> None:
    """A panel of where everything is, then curl commands to try (outside it: easy to copy)."""
    by_name = {spec.name: spec for spec in services}
    api = by_name[REGMODEL].url
    lines = [
        f"[bold]MLflow UI[/]        {by_name[MLFLOW].url}",
        f"[bold]RegModel API[/]     {api}",
        f"[bold]API docs[/]         {api}/docs",
        f"[bold]ReDoc[/]            {api}/redoc",
    ]
    if CLASSMODEL in by_name:
        lines.append(f"[bold]ClassModel API[/]   {by_name[CLASSMODEL].url}  (legacy)")
    if PROMETHEUS in by_name:
        lines.append(f"[bold]Prometheus[/]       {by_name[PROMETHEUS].url}  (alerts: /alerts)")
    if DASHBOARD in by_name:
        lines.insert(0, f"[bold]Dashboard[/]        {by_name[DASHBOARD].url}")
    if ALERTMANAGER in by_name:
        kinds = ", ".join(receiver_kinds(settings)) or "no receiver set: shown here only"
        lines.append(f"[bold]Alertmanager[/]     {by_name[ALERTMANAGER].url}  (alerts to {kinds})")
    if AIRFLOW in by_name:
        lines.append(
            f"[bold]Airflow UI[/]       {by_name[AIRFLOW].url}  (DAGs start paused: unpause "
            "them there)"
        )
    lines.append(f"[bold]logs[/]             {settings.logs_dir}/<service>.log")
    if report is not None and report.failed:
        lines.append(f"[yellow]no first model for {', '.join(report.failed)}: see above[/]")
    console.print(Panel("\n".join(lines), title="bikecount stack is up", border_style="green"))
    console.print("[bold]Try:[/]")
    for command in example_commands(api, by_name.get(CLASSMODEL), example_record(settings)):
        console.print(Text(f"  {command}"), soft_wrap=True, highlight=False)
    console.print("[dim]Ctrl-C stops everything.[/]")


# A record in the Explore API's own field names, for when no data set is there to take one
# from: the documentation's example (the three fields a prediction needs).
FALLBACK_RECORD = {
    "nom_compteur": str(EXAMPLE_RECORD[COUNTER]),
    "date": str(EXAMPLE_RECORD[TIMESTAMP]),
    "coordinates": str(EXAMPLE_RECORD[COORDINATES]),
}


def example_record(settings: Settings) -> dict[str, str]:
    """A record of a counter the first models know (the first row of the test sample), in the
    field names the Paris Open Data API answers with."""
    try:
        row = to_export_columns(read_records(settings.dataset_path("test_sample"))).iloc[0]
        return {
            "nom_compteur": str(row[COUNTER]),
            "date": str(row[TIMESTAMP]),
            "coordinates": str(row[COORDINATES]),
        }
    except Exception:  # only an example: any problem with the file falls back to a fixed one
        return FALLBACK_RECORD


def example_commands(api: str, legacy: ServiceSpec | None, record: dict[str, str]) -> list[str]:
    """The seed's curl sequence, pointed at this stack."""
    predict = json.dumps({"records": [record], "model_type": "rf"}, ensure_ascii=False)
    train = json.dumps(
        {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True}
    )
    # Quoted for a POSIX shell: counter names hold apostrophes ("quai de l'Hôtel de Ville").
    header = "-H 'Content-Type: application/json'"
    commands = [
        f"curl {api}/health",
        f"curl -X POST {api}/predict {header} -d {shlex.quote(predict)}",
        f"curl -X POST {api}/train {header} -d {shlex.quote(train)}",
    ]
    if legacy is not None:
        records = json.dumps({"records": [record]}, ensure_ascii=False)
        commands.append(f"curl -X POST {legacy.url}/predict {header} -d {shlex.quote(records)}")
    return commands


def up_command(
    ctx: typer.Context,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="Also start the legacy ClassModel API.")
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart the APIs when bikecount's code changes.")
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to bind (default 127.0.0.1, this machine only; or BIKECOUNT_HOST)."
        ),
    ] = None,
    mlflow_port: Annotated[
        int | None, typer.Option(help="MLflow port (default 5000, or BIKECOUNT_MLFLOW_PORT).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="RegModel API port (default 8000, or BIKECOUNT_API_PORT).")
    ] = None,
    classmodel_port: Annotated[
        int | None,
        typer.Option(help="ClassModel API port (default 8080, or BIKECOUNT_CLASSMODEL_PORT)."),
    ] = None,
    monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring",
            help="Also start Prometheus (if installed) scraping the APIs' /metrics, and "
            "Alertmanager (if installed) delivering its alerts.",
        ),
    ] = False,
    prometheus_port: Annotated[
        int | None,
        typer.Option(help="Prometheus port (default 9090, or BIKECOUNT_PROMETHEUS_PORT)."),
    ] = None,
    alertmanager_port: Annotated[
        int | None,
        typer.Option(help="Alertmanager port (default 9093, or BIKECOUNT_ALERTMANAGER_PORT)."),
    ] = None,
    airflow: Annotated[
        bool,
        typer.Option(
            "--airflow",
            help="Also start Airflow (standalone) running the DAGs of dags/ against the stack.",
        ),
    ] = False,
    airflow_port: Annotated[
        int | None,
        typer.Option(help="Airflow UI and API port (default 8081, or BIKECOUNT_AIRFLOW_PORT)."),
    ] = None,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not start the dashboard.")
    ] = False,
    dashboard_port: Annotated[
        int | None,
        typer.Option(help="Dashboard port (default 8501, or BIKECOUNT_DASHBOARD_PORT)."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Also show access logs and chatter (always in logs/<service>.log)."
        ),
    ] = False,
    no_bootstrap: Annotated[
        bool,
        typer.Option("--no-bootstrap", help="Do not make data or train first models if missing."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds each service has to answer its health check.")
    ] = 120.0,
) -> None:
    """Start MLflow, the RegModel API and the dashboard (and the legacy ClassModel API,
    Prometheus, Airflow).

    First start: makes the data sets and trains fast first models, so /predict answers at once;
    then, in the background, fills the pipeline store and trains full models that take over.

    Services' warnings and errors go to the terminal, everything to logs/<service>.log.
    Ctrl-C (or SIGTERM) stops everything.
    """
    quiet_mlflow()
    settings = settings_of(ctx)
    # Where things listen is settings (BIKECOUNT_*); an option given here wins for this run.
    listen = {
        "host": host,
        "mlflow_port": mlflow_port,
        "api_port": api_port,
        "classmodel_port": classmodel_port,
        "prometheus_port": prometheus_port,
        "alertmanager_port": alertmanager_port,
        "airflow_port": airflow_port,
        "dashboard_port": dashboard_port,
    }
    settings = settings.model_copy(
        update={name: value for name, value in listen.items() if value is not None}
    )
    prometheus = monitoring_available() if monitoring else False
    options = StackOptions(
        legacy=legacy,
        reload=reload,
        monitoring=prometheus,
        alertmanager=alertmanager_available() if prometheus else False,
        airflow=airflow,
        dashboard=not no_dashboard,
        bootstrap=not no_bootstrap,
        health_timeout=timeout,
    )
    if options.monitoring:
        write_prometheus_config(settings, build_services(settings, options))
    if options.monitoring and options.alertmanager:
        write_alertmanager_config(settings, alertmanager_config_file(settings))
    if options.airflow:
        check_airflow()
    if not verbose:
        route_mlflow_logs(settings)
    try:
        run_until_stopped(settings, options, verbose=verbose)
    except PortInUseError as exc:
        fail(str(exc))
    except ServiceFailedError as exc:
        _print_tail(exc)
        fail(
            f"{exc}; everything else was stopped",
            hint=f"full log: {settings.logs_dir}/{exc.service}.log",
        )
    except StackError as exc:
        fail(f"{exc}; every service was stopped")
    except StopRequested as exc:
        console.print(f"[bold]{exc.signal_name}: every service stopped.[/]")
    except KeyboardInterrupt:
        console.print("[bold]interrupted: every service stopped.[/]")


def check_airflow() -> None:
    """Fail before anything starts when Airflow or the DAG folder is missing."""
    if importlib.util.find_spec("airflow") is None:
        fail("--airflow: Airflow is not installed", hint=AIRFLOW_INSTALL_HINT)
    if dags_folder() is None:
        fail(
            "--airflow: no dags/ folder beside the bikecount sources",
            hint="run from a checkout of the repository (pip install -e .)",
        )


def monitoring_available() -> bool:
    """Whether ``prometheus`` is on PATH; if not, say how to get it (the stack starts anyway)."""
    if shutil.which("prometheus") is not None:
        return True
    err_console.print(
        f"[yellow]--monitoring: no prometheus on PATH[/] ({PROMETHEUS_INSTALL_HINT}); "
        "starting without it. /metrics is served anyway; `docker compose --profile monitoring "
        "up` runs Prometheus and Grafana in containers."
    )
    return False


def alertmanager_available() -> bool:
    """Whether Alertmanager is on PATH; if not, say how to get it (the stack starts anyway)."""
    if alertmanager_program() is not None:
        return True
    err_console.print(
        f"[yellow]--monitoring: no Alertmanager on PATH[/] ({ALERTMANAGER_INSTALL_HINT}); "
        "Prometheus fires its alerts, and they reach nobody."
    )
    return False


def run_until_stopped(settings: Settings, options: StackOptions, verbose: bool = False) -> None:
    """Run the stack with the terminal's displays attached."""
    progress = TrainingProgress(None if verbose else settings.logs_dir / STACK_LOG)
    hooks = StackHooks(
        on_line=print_log_line if verbose else filtered_printer(LogFilter()),
        on_background=print_background,
        on_starting=print_starting,
        on_healthy=print_healthy,
        on_ready=partial(print_ready, settings),
        bootstrap=progress.hooks(),
    )
    try:
        run_stack(settings, options, hooks)
    finally:
        progress.stop()  # a Ctrl-C during training must not leave the display running


def _print_tail(exc: ServiceFailedError) -> None:
    if exc.log_tail:
        body = Text("\n".join(exc.log_tail))
        err_console.print(Panel(body, title=f"last lines of {exc.service}", border_style="red"))
