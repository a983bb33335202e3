"""``bikecount data``: generate, fetch and split record files."""

from __future__ import annotations

import typer

app = typer.Typer(help="Get data: generate it, download the Paris export, split it in time.")
