"""The progress display of the first models ``bikecount up`` trains on a first start."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

from bikecount.cli.console import console, err_console
from bikecount.cli.stack.chatter import output_to
from bikecount.stack import BootstrapHooks
from bikecount.train import TrainResult


class TrainingProgress:
    """The Rich progress display of the first models, fed by the bootstrap's callbacks.

    Args:
        chatter_log: where what MLflow prints while a first model trains goes (None: on screen).
    """

    def __init__(self, chatter_log: Path | None = None) -> None:
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self.failures: dict[str, str] = {}
        self.chatter_log = chatter_log

    def hooks(self) -> BootstrapHooks:
        return BootstrapHooks(
            on_message=lambda message: console.print(f"[bold]bootstrap:[/] {escape(message)}"),
            on_training=self.start,
            on_stage=self.stage,
            on_trained=self.done,
            chatter=partial(output_to, self.chatter_log),
        )

    def start(self, model_types: Sequence[str]) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[model]}", table_column=Column(width=9, no_wrap=True)),
            BarColumn(bar_width=10),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, ratio=1)),
            TimeElapsedColumn(),
            console=console,
        )
        for model_type in model_types:
            self.tasks[model_type] = self.progress.add_task(
                "waiting", total=1, model=model_type, start=False
            )
        self.progress.start()

    def stage(self, model_type: str, stage: str) -> None:
        if self.progress is not None:
            self.progress.start_task(self.tasks[model_type])
            self.progress.update(self.tasks[model_type], description=escape(stage))

    def done(self, model_type: str, result: TrainResult | None, error: Exception | None) -> None:
        if self.progress is None:
            return
        if result is not None:
            metrics = ", ".join(f"{k} {v:.3g}" for k, v in list(result.metrics.items())[:2])
            description = f"[green]v{result.version} registered[/] ({metrics})"
        else:
            self.failures[model_type] = str(error)
            description = "[red]failed[/] (see below)"
        self.progress.update(self.tasks[model_type], description=description, completed=1)
        if all(self.progress.tasks[i].finished for i in self.tasks.values()):
            self.stop()

    def stop(self) -> None:
        """Close the display (also on Ctrl-C) and say what failed, in full."""
        if self.progress is None:
            return
        self.progress.stop()
        self.progress = None
        for model_type, error in self.failures.items():
            err_console.print(f"[red]first {model_type} model failed:[/] {escape(error)}")
