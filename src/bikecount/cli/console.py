"""Shared Rich console and error reporting for the CLI: messages, never tracebacks."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape

from bikecount.registry import shown_uri

console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and how to fix it) on stderr and exit with ``code``."""
    # Messages quote paths, URLs and values: a "[...]" in them is text, not Rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)


def fail_mlflow(exc: MlflowException, tracking_uri: str) -> NoReturn:
    """MLflow's error, and a hint to check that its server (credentials left out) answers."""
    fail(f"MLflow failed: {exc.message}", hint=f"is {shown_uri(tracking_uri)} reachable?")


def print_json(payload: Any) -> None:
    """One JSON object on stdout, nothing else (for scripts)."""
    typer.echo(json.dumps(payload, default=str))
