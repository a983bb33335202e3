"""How the modelling commands print their metrics."""

from __future__ import annotations

import math

from rich.console import Console

from bikecount.cli.modeling import _metrics_table


def test_an_undefined_metric_reads_na_whether_none_or_nan() -> None:
    # evaluate's metrics pass through finite_metrics (None for R² on one row); train's keep NaN.
    table = _metrics_table({"rmse": 1.23456, "r2": None, "auc": math.nan}, title="on the file")
    console = Console(width=60, record=True)
    console.print(table)
    text = console.export_text()
    assert "on the file" in text
    assert "1.2346" in text
    assert text.count("n/a") == 2
