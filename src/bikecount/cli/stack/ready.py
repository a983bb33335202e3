"""What ``bikecount up`` prints once every service answers: where each one is, and commands to
try against them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from rich.panel import Panel
from rich.text import Text

from bikecount.api.schemas import EXAMPLE_RECORD
from bikecount.cli.console import console
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.monitoring.alerting import receiver_kinds
from bikecount.records import COORDINATES, COUNTER, TIMESTAMP, to_export_columns
from bikecount.stack import BootstrapReport
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

# A record in the Explore API's own field names, for when no data set is there to take one
# from: the documentation's example (the three fields a prediction needs).
FALLBACK_RECORD = {
    "nom_compteur": str(EXAMPLE_RECORD[COUNTER]),
    "date": str(EXAMPLE_RECORD[TIMESTAMP]),
    "coordinates": str(EXAMPLE_RECORD[COORDINATES]),
}


def print_ready(
    settings: Settings, services: Sequence[ServiceSpec], report: BootstrapReport | None
) -> None:
    """A panel of where everything is, then curl commands to try (outside it: easy to copy)."""
    by_name = {spec.name: spec for spec in services}
    lines = ready_lines(settings, by_name, report)
    console.print(Panel("\n".join(lines), title="bikecount stack is up", border_style="green"))
    console.print("[bold]Try:[/]")
    api = by_name[REGMODEL].url
    for command in example_commands(api, by_name.get(CLASSMODEL), example_record(settings)):
        console.print(Text(f"  {command}"), soft_wrap=True, highlight=False)
    console.print("[dim]Ctrl-C stops everything.[/]")


def ready_lines(
    settings: Settings, by_name: dict[str, ServiceSpec], report: BootstrapReport | None
) -> list[str]:
    """The panel's lines (Rich markup): each running service's address, the logs, and the
    models the first start could not train."""
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
    return lines


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
