"""Options several commands share, each defined once (``Annotated`` aliases for Typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikecount.models import MODEL_TYPES
from bikecount.models.catalog import REGRESSOR_TYPES

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]
ModelOption = Annotated[
    str, typer.Option("--model", "-m", help=f"Model type: {', '.join(MODEL_TYPES)}.")
]
# The pipeline's steps and the backtest forecast with the pipeline's model unless told.
PipelineModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Model type: {', '.join(REGRESSOR_TYPES)} [default: BIKECOUNT_PIPELINE_MODEL_TYPE].",
    ),
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
