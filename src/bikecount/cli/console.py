"""Shared Rich console and error reporting for the CLI: messages, never tracebacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and how to fix it) on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the library's precise exceptions into one-line CLI errors."""
    try:
        yield
    except kinds as exc:
        fail(str(exc))


def print_json(payload: Any) -> None:
    """One JSON object on stdout, nothing else (for scripts)."""
    typer.echo(json.dumps(payload, default=str))
