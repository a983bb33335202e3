"""What ``bikecount up`` prints about its services: their log lines, each behind its coloured
name, and when each starts, answers or fails."""

from __future__ import annotations

from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from bikecount.cli.console import console, err_console
from bikecount.cli.log_filter import LogFilter
from bikecount.stack import ServiceFailedError
from bikecount.stack.processes import LineCallback
from bikecount.stack.services import (
    AIRFLOW,
    ALERTMANAGER,
    CLASSMODEL,
    DASHBOARD,
    MLFLOW,
    PROMETHEUS,
    REGMODEL,
    ServiceSpec,
)

SERVICE_STYLES = {
    MLFLOW: "cyan",
    REGMODEL: "green",
    CLASSMODEL: "magenta",
    PROMETHEUS: "yellow",
    ALERTMANAGER: "red",
    AIRFLOW: "blue",
    DASHBOARD: "bright_red",
}
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


def print_starting(spec: ServiceSpec) -> None:
    console.print(f"[bold]starting {spec.name}[/] on {spec.url} ...")


def print_healthy(spec: ServiceSpec) -> None:
    console.print(f"[bold green]{spec.name} is up[/] ({spec.health_url})")


def print_failure_tail(exc: ServiceFailedError) -> None:
    """The last lines the failed service wrote, in a red panel (nothing when it wrote none)."""
    if exc.log_tail:
        body = Text("\n".join(exc.log_tail))
        err_console.print(Panel(body, title=f"last lines of {exc.service}", border_style="red"))
