"""``bikecount up``: its options, the services they start, and what the terminal is told when
the stack stops."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Annotated, Any

import typer

from bikecount.cli.console import console, fail
from bikecount.cli.context import ENV_PREFIX, settings_of
from bikecount.cli.log_filter import LogFilter
from bikecount.cli.stack.chatter import STACK_LOG, route_mlflow_logs
from bikecount.cli.stack.first_models import TrainingProgress
from bikecount.cli.stack.optional_services import (
    alertmanager_available,
    check_airflow,
    monitoring_available,
)
from bikecount.cli.stack.ready import print_ready
from bikecount.cli.stack.service_output import (
    filtered_printer,
    print_background,
    print_failure_tail,
    print_healthy,
    print_log_line,
    print_starting,
)
from bikecount.config import Settings
from bikecount.monitoring.alerting import write_alertmanager_config
from bikecount.registry import quiet_mlflow
from bikecount.stack import (
    PortInUseError,
    ServiceFailedError,
    StackError,
    StackHooks,
    StopRequested,
    run_stack,
)
from bikecount.stack.prometheus import write_prometheus_config
from bikecount.stack.services import StackOptions, alertmanager_config_file, build_services

# The options named as the settings they override for this run (where things listen).
LISTEN_SETTINGS = (
    "host",
    "mlflow_port",
    "api_port",
    "classmodel_port",
    "prometheus_port",
    "alertmanager_port",
    "airflow_port",
    "dashboard_port",
)


def port_option(service: str, setting: str) -> Any:
    """A ``--*-port`` option whose help gives the setting's default and variable."""
    default = Settings.model_fields[setting].default
    variable = f"{ENV_PREFIX}{setting.upper()}"
    return typer.Option(help=f"{service} port (default {default}, or {variable}).")


LegacyOption = Annotated[
    bool, typer.Option("--legacy", help="Also start the legacy ClassModel API.")
]
ReloadOption = Annotated[
    bool, typer.Option("--reload", help="Restart the APIs when bikecount's code changes.")
]
HostOption = Annotated[
    str | None,
    typer.Option(
        help="Interface to bind (default 127.0.0.1, this machine only; or BIKECOUNT_HOST)."
    ),
]
MonitoringOption = Annotated[
    bool,
    typer.Option(
        "--monitoring",
        help="Also start Prometheus (if installed) scraping the APIs' /metrics, and "
        "Alertmanager (if installed) delivering its alerts.",
    ),
]
AirflowOption = Annotated[
    bool,
    typer.Option(
        "--airflow",
        help="Also start Airflow (standalone) running the DAGs of dags/ against the stack.",
    ),
]
NoDashboardOption = Annotated[
    bool, typer.Option("--no-dashboard", help="Do not start the dashboard.")
]
VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Also show access logs and chatter (always in logs/<service>.log)."
    ),
]
NoBootstrapOption = Annotated[
    bool, typer.Option("--no-bootstrap", help="Do not make data or train first models if missing.")
]
TimeoutOption = Annotated[
    float, typer.Option(help="Seconds each service has to answer its health check.")
]
MlflowPort = Annotated[int | None, port_option("MLflow", "mlflow_port")]
ApiPort = Annotated[int | None, port_option("RegModel API", "api_port")]
ClassmodelPort = Annotated[int | None, port_option("ClassModel API", "classmodel_port")]
PrometheusPort = Annotated[int | None, port_option("Prometheus", "prometheus_port")]
AlertmanagerPort = Annotated[int | None, port_option("Alertmanager", "alertmanager_port")]
AirflowPort = Annotated[int | None, port_option("Airflow UI and API", "airflow_port")]
DashboardPort = Annotated[int | None, port_option("Dashboard", "dashboard_port")]


def up_command(
    ctx: typer.Context,
    legacy: LegacyOption = False,
    reload: ReloadOption = False,
    host: HostOption = None,
    mlflow_port: MlflowPort = None,
    api_port: ApiPort = None,
    classmodel_port: ClassmodelPort = None,
    monitoring: MonitoringOption = False,
    prometheus_port: PrometheusPort = None,
    alertmanager_port: AlertmanagerPort = None,
    airflow: AirflowOption = False,
    airflow_port: AirflowPort = None,
    no_dashboard: NoDashboardOption = False,
    dashboard_port: DashboardPort = None,
    verbose: VerboseOption = False,
    no_bootstrap: NoBootstrapOption = False,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Start MLflow, the RegModel API and the dashboard (and the legacy ClassModel API,
    Prometheus, Airflow).

    First start: makes the data sets and trains fast first models, so /predict answers at once;
    then, in the background, fills the pipeline store and trains full models that take over.

    Services' warnings and errors go to the terminal, everything to logs/<service>.log.
    Ctrl-C (or SIGTERM) stops everything.
    """
    quiet_mlflow()
    # --host and the --*-port options (LISTEN_SETTINGS) are read by name from ctx.params.
    settings = with_listen_options(settings_of(ctx), ctx.params)
    prometheus = monitoring and monitoring_available()
    options = StackOptions(
        legacy=legacy,
        reload=reload,
        monitoring=prometheus,
        alertmanager=prometheus and alertmanager_available(),
        airflow=airflow,
        dashboard=not no_dashboard,
        bootstrap=not no_bootstrap,
        health_timeout=timeout,
    )
    prepare_services(settings, options)
    if not verbose:
        route_mlflow_logs(settings)
    run_and_report(settings, options, verbose=verbose)


def with_listen_options(settings: Settings, params: Mapping[str, Any]) -> Settings:
    """The settings, with the host and ports given as options replacing theirs for this run
    (an option not given leaves the setting, from BIKECOUNT_* or its default)."""
    given = {name: params[name] for name in LISTEN_SETTINGS if params.get(name) is not None}
    return settings.model_copy(update=given)


def prepare_services(settings: Settings, options: StackOptions) -> None:
    """Write the optional services' configurations; fail before anything starts when Airflow
    cannot run."""
    if options.monitoring:
        write_prometheus_config(settings, build_services(settings, options))
    if options.monitoring and options.alertmanager:
        write_alertmanager_config(settings, alertmanager_config_file(settings))
    if options.airflow:
        check_airflow()


def run_and_report(settings: Settings, options: StackOptions, verbose: bool = False) -> None:
    """Run the stack until it stops, and say why it stopped (an error: exit code 1)."""
    try:
        run_until_stopped(settings, options, verbose=verbose)
    except PortInUseError as exc:
        fail(str(exc))
    except ServiceFailedError as exc:
        print_failure_tail(exc)
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
