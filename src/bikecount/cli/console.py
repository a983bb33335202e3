"""Shared Rich console and error reporting for the CLI: messages, never tracebacks."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape

from bikecount.faults import tracking_store_busy
from bikecount.registry import shown_uri

console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and how to fix it) on stderr and exit with ``code``."""
    # Messages quote paths, URLs and values: a "[...]" in them is text, not Rich markup.
    # soft_wrap: a message stays one line (a path is never cut), whatever the terminal's width.
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}", soft_wrap=True)
    raise typer.Exit(code)


def fail_mlflow(exc: MlflowException, tracking_uri: str) -> NoReturn:
    """MLflow's error, and a hint to check that its server (credentials left out) answers;
    its store locked by another writer, said as such (exit code 75)."""
    busy = tracking_store_busy(exc, shown_uri(tracking_uri))
    if busy is not None:
        fail(busy.message, busy.hint, busy.exit_code)
    fail(f"MLflow failed: {exc.message}", hint=f"is {shown_uri(tracking_uri)} reachable?")


def print_json(payload: Any) -> None:
    """One JSON object on stdout, nothing else (for scripts)."""
    typer.echo(json.dumps(payload, default=str))
