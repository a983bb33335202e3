"""``bikecount monitor``: data drift of current records against the reference, and model decay."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from mlflow.exceptions import MlflowException
from rich.table import Table

from bikecount.cli.console import console, fail, fail_mlflow, print_json
from bikecount.cli.context import registry_of, settings_of
from bikecount.cli.failures import fail_for
from bikecount.cli.options import JsonOption
from bikecount.data.io import DataFileError
from bikecount.models import MODEL_TYPES, UnknownModelTypeError, get_spec
from bikecount.monitoring.decay import ChampionScore, decay_ratio
from bikecount.monitoring.drift import ColumnScore
from bikecount.monitoring.reports import prune_reports
from bikecount.monitoring.run import MonitoringResult, run_monitoring
from bikecount.records import RecordError
from bikecount.registry import RegistryUnavailableError, quiet_mlflow

COMPARING = "comparing current data with the reference..."
PREPARE_HINT = "create the data sets with `bikecount data prepare` (or give --reference/--current)"

ReferenceOption = Annotated[
    Path | None, typer.Option(help="Reference records (default: the reference data set).")
]
CurrentOption = Annotated[
    Path | None, typer.Option(help="Current records (default: the current data set).")
]
ChampionOption = Annotated[
    str, typer.Option("--model", "-m", help=f"Champion to score: {', '.join(MODEL_TYPES)}.")
]


def monitor_command(
    ctx: typer.Context,
    reference: ReferenceOption = None,
    current: CurrentOption = None,
    model: ChampionOption = "gbm",
    as_json: JsonOption = False,
) -> None:
    """Compare current data with the reference (Evidently), score the champion on it, log to MLflow.

    Writes an HTML report under the reports folder. Thresholds are settings
    (BIKECOUNT_DRIFT_SHARE_THRESHOLD, BIKECOUNT_DRIFT_METHOD, BIKECOUNT_DRIFT_COLUMN_THRESHOLD).
    The data drifted when the share of drifted columns reaches its threshold (seasonal columns
    differ between any two periods, so one column is not enough) or when the counts themselves
    drifted. The champion decayed when its error share (1 - R²) on the current data is at
    least BIKECOUNT_RETRAIN_DECAY_RATIO times its holdout's. The retraining pipeline uses both
    rules.
    """
    quiet_mlflow()
    settings = settings_of(ctx)
    reference = _existing(reference or settings.dataset_path("reference"))
    current = _existing(current or settings.dataset_path("current"))
    status = nullcontext() if as_json else console.status(COMPARING)
    try:
        get_spec(model)
        registry = registry_of(ctx)
        registry.check_reachable()  # within seconds, not MLflow's retries
        with status:
            result = run_monitoring(settings, registry, reference, current, model)
    except (DataFileError, RecordError, UnknownModelTypeError, ValueError, OSError) as exc:
        fail_for(exc, path=settings.reports_dir)
    except MlflowException as exc:
        fail_mlflow(exc, settings.tracking_uri)
    except RegistryUnavailableError as exc:
        fail(str(exc), hint="start it with `bikecount up`, or unset BIKECOUNT_MLFLOW_TRACKING_URI")
    prune_reports(settings.reports_dir, settings.reports_keep)
    if as_json:
        print_json(result.as_dict())
        return
    print_summary(result, settings.retrain_decay_ratio)


def _existing(path: Path) -> Path:
    """``path``, when it is a file; else exit saying how to make the data sets."""
    if not path.is_file():
        fail(f"data file not found: {path}", hint=PREPARE_HINT)
    return path


def print_summary(result: MonitoringResult, decay_limit: float) -> None:
    """The verdict, the drifted columns, per-column scores, the champion (decayed at
    ``decay_limit`` times its holdout's error share), report and run."""
    drift = result.drift
    verdict = "[bold red]drift detected[/]" if drift.drift_detected else "[green]no drift[/]"
    counts = drift.target_drift["drifted"] if drift.target_drift else None
    counts_words = {True: "counts drifted", False: "counts stable", None: "counts not compared"}
    console.print(
        f"{verdict}: {drift.drift_share:.0%} of columns drifted "
        f"(threshold {drift.share_threshold:.0%}), {counts_words[counts]}; "
        f"{drift.n_reference:,} reference vs {drift.n_current:,} current records"
    )
    if drift.drifted_columns:
        console.print(f"drifted columns: {', '.join(drift.drifted_columns)}")
    console.print(scores_table(drift.column_scores))
    print_champion(result.champion, decay_limit)
    console.print(f"report: {drift.report_path}")
    console.print(f"MLflow run: {result.run_id} (experiment {result.experiment})")


def scores_table(scores: dict[str, ColumnScore]) -> Table:
    table = Table(title="per-column drift")
    for column in ("column", "score", "method", "threshold", "drifted"):
        table.add_column(column, justify="right" if column in ("score", "threshold") else "left")
    for name, score in scores.items():
        value = "n/a" if score["score"] is None else f"{score['score']:.4f}"
        table.add_row(
            name,
            value,
            str(score.get("method") or ""),
            "" if score.get("threshold") is None else f"{score['threshold']:g}",
            "[red]yes[/]" if score["drifted"] else "no",
        )
    return table


def print_champion(champion: ChampionScore, decay_limit: float) -> None:
    if champion.metrics_current is None:
        console.print(f"champion {champion.model_type}: not scored ({champion.reason})")
        return
    table = Table(
        title=f"champion {champion.model_type} v{champion.version} ({champion.rows:,} records)"
    )
    for column in ("metric", "current", "holdout"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    holdout = champion.metrics_holdout or {}
    for name, value in champion.metrics_current.items():
        table.add_row(name, _number(value), _number(holdout.get(name)))
    console.print(table)
    ratio = decay_ratio(champion)
    if ratio is not None:
        words = "[bold red]decayed[/]" if ratio >= decay_limit else "[green]holds[/]"
        console.print(
            f"champion {words}: error share 1-R² on current data {ratio:.2f}× its holdout's "
            f"(decay at {decay_limit:.2f}×)"
        )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
