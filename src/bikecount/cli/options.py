"""Options several commands share, each defined once (``Annotated`` aliases for Typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikecount.models import MODEL_TYPES

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]
ModelOption = Annotated[
    str, typer.Option("--model", "-m", help=f"Model type: {', '.join(MODEL_TYPES)}.")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Hyperparameter override NAME=VALUE (repeatable)."),
]
LabelledDataOption = Annotated[
    Path, typer.Option(help="A labelled record file (.csv, .csv.gz, parquet).")
]
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval", help="Level of each forecast's interval (lower, upper), between 0 and 1."
    ),
]
