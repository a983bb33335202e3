"""``bikecount monitor``: data drift of current records against the reference, and model decay."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from mlflow.exceptions import MlflowException
from rich.table import Table

from bikecount.cli.console import console, fail, print_json
from bikecount.config import Settings
from bikecount.data.io import DataFileError
from bikecount.models import MODEL_TYPES, UnknownModelTypeError, get_spec
from bikecount.monitoring.drift import ChampionScore, MonitoringResult, run_monitoring
from bikecount.monitoring.reports import prune_reports
from bikecount.records import RecordError
from bikecount.registry import configure_tracking, require_tracking

PREPARE_HINT = "create the data sets with `bikecount data prepare` (or give --reference/--current)"


def monitor_command(
    reference: Annotated[
        Path | None, typer.Option(help="Reference records (default: the reference data set).")
    ] = None,
    current: Annotated[
        Path | None, typer.Option(help="Current records (default: the current data set).")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help=f"Champion to score: {', '.join(MODEL_TYPES)}.")
    ] = "gbm",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object, nothing else.")
    ] = False,
) -> None:
    """Compare current data with the reference (Evidently), score the champion on it, log to MLflow.

    Writes an HTML report under the reports folder. Thresholds are settings
    (BIKECOUNT_DRIFT_SHARE_THRESHOLD, BIKECOUNT_DRIFT_METHOD, BIKECOUNT_DRIFT_COLUMN_THRESHOLD).
    Seasonal columns (month, day_of_year) differ between any two periods: the share of drifted
    columns, not one column, decides whether the data set drifted.
    """
    # MLflow warns on every cloudpickle load; the format is a deliberate choice.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    settings = Settings()
    reference = reference or settings.dataset_path("reference")
    current = current or settings.dataset_path("current")
    for path in (reference, current):
        if not path.is_file():
            fail(f"data file not found: {path}", hint=PREPARE_HINT)
    try:
        get_spec(model)
        configure_tracking(settings)  # bounded MLflow requests
        require_tracking(settings)
        if as_json:
            result = run_monitoring(settings, reference, current, model)
        else:
            with console.status("comparing current data with the reference..."):
                result = run_monitoring(settings, reference, current, model)
    except (DataFileError, RecordError, UnknownModelTypeError, ValueError, OSError) as exc:
        fail(str(exc))
    except MlflowException as exc:
        fail(f"MLflow failed: {exc.message}", hint=f"is {settings.tracking_uri} reachable?")
    prune_reports(settings.reports_dir, settings.reports_keep)
    if as_json:
        print_json(result.as_dict())
        return
    print_summary(result)


def print_summary(result: MonitoringResult) -> None:
    """The verdict, the drifted columns, per-column scores, the champion, report and run."""
    drift = result.drift
    verdict = "[bold red]drift detected[/]" if drift.drift_detected else "[green]no drift[/]"
    console.print(
        f"{verdict}: {drift.drift_share:.0%} of columns drifted "
        f"(threshold {drift.share_threshold:.0%}); "
        f"{drift.n_reference:,} reference vs {drift.n_current:,} current records"
    )
    if drift.drifted_columns:
        console.print(f"drifted columns: {', '.join(drift.drifted_columns)}")
    console.print(scores_table(drift.column_scores))
    print_champion(result.champion)
    console.print(f"report: {drift.report_path}")
    console.print(f"MLflow run: {result.run_id} (experiment bikecount-monitoring)")


def scores_table(scores: dict[str, dict[str, Any]]) -> Table:
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


def print_champion(champion: ChampionScore) -> None:
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


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
