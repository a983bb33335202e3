"""Where the chatter of ``bikecount up``'s own MLflow client goes: to ``logs/bikecount-up.log``.

The in-process MLflow client (first models) chatters ("🏃 View run ...", "Waiting up to 300
seconds ..."): to this log file, unless --verbose.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from bikecount.cli.console import console, err_console
from bikecount.config import Settings

STACK_LOG = "bikecount-up.log"


def route_mlflow_logs(settings: Settings) -> None:
    """Send this process's MLflow client messages to ``logs/bikecount-up.log`` instead."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.logs_dir / STACK_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    mlflow_logger = logging.getLogger("mlflow")
    for old in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(old)
    mlflow_logger.addHandler(handler)
    mlflow_logger.propagate = False


@contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Python-level stdout and stderr appended to ``path`` meanwhile (None: left alone).

    The consoles are pinned to the terminal first, so the progress display stays on screen.
    """
    if path is None:
        yield
        return
    console.file, err_console.file = sys.stdout, sys.stderr
    with path.open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        yield
