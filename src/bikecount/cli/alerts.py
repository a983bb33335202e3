"""``bikecount alerts``: the Alertmanager configuration that delivers the stack's alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikecount.cli.console import console, err_console
from bikecount.cli.context import settings_of
from bikecount.cli.failures import fail_for
from bikecount.monitoring.alerting import receiver_kinds, write_alertmanager_config

app = typer.Typer(help="Alerts: where Prometheus' alerts are delivered (Alertmanager).")

NO_RECEIVER_HINT = (
    "set BIKECOUNT_ALERT_WEBHOOK_URL, BIKECOUNT_ALERT_SLACK_WEBHOOK_URL or "
    "BIKECOUNT_ALERT_DISCORD_WEBHOOK_URL to have them delivered"
)


@app.command("config")
def config_command(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option(help="Where to write alertmanager.yml.")] = Path(
        "alertmanager.yml"
    ),
    shared: Annotated[
        bool,
        typer.Option(
            "--shared",
            help="Readable by every user (an Alertmanager container running as another user).",
        ),
    ] = False,
) -> None:
    """Write Alertmanager's configuration from the settings: one receiver, the URLs set."""
    settings = settings_of(ctx)
    try:
        path = write_alertmanager_config(settings, output, private=not shared)
    except OSError as exc:
        fail_for(exc, f"cannot write {output}: {exc}", path=output)
    kinds = receiver_kinds(settings)
    if kinds:
        console.print(f"wrote {path}: alerts go to {', '.join(kinds)}")
    else:
        console.print(f"wrote {path}")
        err_console.print(
            f"[yellow]no alert receiver set[/]: alerts reach nobody; {NO_RECEIVER_HINT}"
        )
