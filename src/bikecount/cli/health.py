"""``bikecount health``: which counters are broken on a day, since when, and the evidence."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bikecount.cli.console import console, fail, print_json
from bikecount.cli.options import JsonOption, LabelledDataOption
from bikecount.data.io import DataFileError, read_records
from bikecount.health import CounterHealth, HealthInputError, HealthReport, check_health
from bikecount.records import RecordError, parse_records

# Faults found is not an error: 1 stays "the check could not run", so scripts can tell them apart.
FAULT_EXIT_CODE = 3

STATUS_STYLES = {
    "ok": "green",
    "outage": "bold red",
    "stuck": "bold magenta",
    "low": "yellow",
    "high": "cyan",
    "unknown": "dim",
}

COLUMNS = ("counter", "status", "since", "expected", "observed", "reason")
NUMBERS = ("expected", "observed")

DayOption = Annotated[
    datetime, typer.Option("--date", formats=["%Y-%m-%d"], help="The local day to check.")
]
FailOnFaultOption = Annotated[
    bool,
    typer.Option(
        "--fail-on-fault",
        help=f"Exit with code {FAULT_EXIT_CODE} when a counter has a fault (for scripts).",
    ),
]


def health_command(
    data: LabelledDataOption,
    day: DayOption,
    as_json: JsonOption = False,
    fail_on_fault: FailOnFaultOption = False,
) -> None:
    """Say for every counter on --date: ok, outage, stuck, low or high, since when, and why.

    Each counter is compared with its own profile (same weekday type and hour over the weeks
    before), scaled by what the whole city did that hour: a holiday or a lockdown moves every
    counter, a broken one moves alone. The file needs the weeks before the day (7 weeks by
    default). Exits 0 whatever the counters' state (a report), unless --fail-on-fault.
    """
    try:
        parsed = parse_records(read_records(data), require_count=True)
        report = check_health(parsed.frame, day.date())
    except (DataFileError, RecordError, HealthInputError) as exc:
        fail(f"{data}: {exc}" if isinstance(exc, HealthInputError) else str(exc))
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if fail_on_fault and report.faults():
        raise typer.Exit(FAULT_EXIT_CODE)


def _print_report(report: HealthReport) -> None:
    city = (
        f"city traffic x{report.city_factor:.2f} of the counters' usual"
        if report.city_factor is not None
        else "too few counters to compare them with the city"
    )
    faults = report.faults()
    console.print(
        f"[bold]counter health on {report.day}[/]: {len(faults)} of {len(report.counters)} "
        f"counters with a fault; {city}"
    )
    table = Table()
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in NUMBERS else "left")
    for health in report.counters:
        table.add_row(*_row(health))
    console.print(table)


def _row(health: CounterHealth) -> tuple[str, ...]:
    style = STATUS_STYLES.get(health.status, "")
    return (
        escape(health.counter),
        f"[{style}]{health.status}[/]",
        health.since.strftime("%Y-%m-%d %H:%M") if health.since is not None else "",
        _bikes(health.expected),
        _bikes(health.observed),
        escape(health.reason),
    )


def _bikes(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"
