"""``bikecount up``: the whole stack on this machine, no Docker needed."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Sequence
from functools import partial
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from bikecount.cli.console import console, err_console, fail
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.monitoring.alerting import receiver_kinds, write_alertmanager_config
from bikecount.records import COORDINATES, COUNTER, TIMESTAMP
from bikecount.stack import (
    BootstrapHooks,
    BootstrapReport,
    PortInUseError,
    ServiceFailedError,
    StackError,
    StackHooks,
    StackOptions,
    StopRequested,
    plan_services,
    run_stack,
)
from bikecount.stack.services import (
    AIRFLOW,
    AIRFLOW_INSTALL_HINT,
    ALERTMANAGER,
    ALERTMANAGER_INSTALL_HINT,
    CLASSMODEL,
    MLFLOW,
    PROMETHEUS,
    PROMETHEUS_INSTALL_HINT,
    REGMODEL,
    ServiceSpec,
    alertmanager_config_file,
    alertmanager_program,
    dags_folder,
    write_prometheus_config,
)
from bikecount.train import TrainResult

SERVICE_STYLES = {
    MLFLOW: "cyan",
    REGMODEL: "green",
    CLASSMODEL: "magenta",
    PROMETHEUS: "yellow",
    ALERTMANAGER: "red",
    AIRFLOW: "blue",
}
PREFIX_WIDTH = max(len(name) for name in SERVICE_STYLES)


def print_log_line(service: str, line: str) -> None:
    """``mlflow     | line``, the prefix coloured per service; the line is shown as is."""
    prefix = Text(f"{service:<{PREFIX_WIDTH}} | ", style=SERVICE_STYLES.get(service, "white"))
    console.print(prefix + Text.from_ansi(line), soft_wrap=True, highlight=False)


class TrainingProgress:
    """The Rich progress display of the first models, fed by the bootstrap's callbacks."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.failures: dict[str, str] = {}

    def hooks(self) -> BootstrapHooks:
        return BootstrapHooks(
            on_message=lambda message: console.print(f"[bold]bootstrap:[/] {escape(message)}"),
            on_training=self.start,
            on_stage=self.stage,
            on_trained=self.done,
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


# A record in the API's snake_case spelling, for when no data set is there to take one from.
FALLBACK_RECORD = {
    "nom_du_compteur": "Face au 20 avenue Denfert-Rochereau N-S",
    "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00",
    "coordonnées_géographiques": "48.839843,2.334531",
}


def example_record(settings: Settings) -> dict[str, str]:
    """A record of a counter the first models know: the first row of the test sample."""
    try:
        row = read_records(settings.dataset_path("test_sample")).iloc[0]
        return {
            "nom_du_compteur": str(row[COUNTER]),
            "date_et_heure_de_comptage": str(row[TIMESTAMP]),
            "coordonnées_géographiques": str(row[COORDINATES]),
        }
    except Exception:  # only an example: any problem with the file falls back to a fixed one
        return FALLBACK_RECORD


def example_commands(api: str, legacy: ServiceSpec | None, record: dict[str, str]) -> list[str]:
    """The seed's curl sequence, pointed at this stack."""
    predict = json.dumps({"records": [record], "model_type": "rf"}, ensure_ascii=False)
    train = json.dumps(
        {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True}
    )
    header = "-H 'Content-Type: application/json'"
    commands = [
        f"curl {api}/health",
        f"curl -X POST {api}/predict {header} -d '{predict}'",
        f"curl -X POST {api}/train {header} -d '{train}'",
    ]
    if legacy is not None:
        records = json.dumps({"records": [record]}, ensure_ascii=False)
        commands.append(f"curl -X POST {legacy.url}/predict {header} -d '{records}'")
    return commands


def up_command(
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
    prometheus_port: Annotated[int, typer.Option(help="Prometheus port.")] = 9090,
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
    no_bootstrap: Annotated[
        bool,
        typer.Option("--no-bootstrap", help="Do not make data or train first models if missing."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds each service has to answer its health check.")
    ] = 120.0,
) -> None:
    """Start MLflow and the RegModel API (and the legacy ClassModel API, Prometheus, Airflow).

    First start: makes the data sets and trains fast first models, so /predict answers at once.

    Logs go to the terminal and to logs/<service>.log. Ctrl-C (or SIGTERM) stops everything.
    """
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(f"invalid settings: {exc}")
    prometheus = monitoring_available() if monitoring else False
    options = StackOptions.from_settings(
        settings,
        host=host,
        mlflow_port=mlflow_port,
        api_port=api_port,
        classmodel_port=classmodel_port,
        legacy=legacy,
        reload=reload,
        monitoring=prometheus,
        prometheus_port=prometheus_port,
        airflow=airflow,
        airflow_port=airflow_port,
        alertmanager=alertmanager_available() if prometheus else False,
        alertmanager_port=alertmanager_port,
        bootstrap=not no_bootstrap,
        health_timeout=timeout,
    )
    if options.monitoring:
        write_prometheus_config(settings, plan_services(settings, options))
    if options.monitoring and options.alertmanager:
        write_alertmanager_config(settings, alertmanager_config_file(settings))
    if options.airflow:
        check_airflow()
    try:
        run_until_stopped(settings, options)
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


def run_until_stopped(settings: Settings, options: StackOptions) -> None:
    """Run the stack with the terminal's displays attached."""
    progress = TrainingProgress()
    hooks = StackHooks(
        on_line=print_log_line,
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
