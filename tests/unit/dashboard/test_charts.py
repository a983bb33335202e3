"""The counter page's charts: forecasts drawn in their intervals' bands where the store has them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bikecount.dashboard import charts

HOURS = pd.date_range("2021-06-01", periods=4, freq="h", tz="Europe/Paris")


def forecasts(lower: list[float]) -> pd.DataFrame:
    prediction = np.array([10.0, 40.0, 120.0, 60.0])
    return pd.DataFrame(
        {
            "day": HOURS.date,
            "timestamp": HOURS,
            "prediction": prediction,
            "lower": lower,
            "upper": prediction * 1.5,
            "model_version": 3,
        }
    )


def marks(spec: dict) -> list[str]:
    return [layer["mark"]["type"] for layer in spec["layer"]]


def test_counts_and_forecasts_are_drawn_in_the_intervals_band() -> None:
    counts = pd.DataFrame({"timestamp": HOURS, "count": [12.0, 35.0, 130.0, np.nan]})

    spec = charts.counter_history_chart(counts, forecasts([6.0, 30.0, 90.0, 45.0])).to_dict()

    assert marks(spec) == ["line", "area", "line"]
    band = spec["layer"][1]
    assert band["encoding"]["y"]["field"] == "lower" and band["encoding"]["y2"]["field"] == "upper"
    assert band["mark"]["opacity"] < 0.5  # the counts stay readable through it


def test_forecasts_stored_without_interval_are_drawn_without_band() -> None:
    counts = pd.DataFrame({"timestamp": HOURS, "count": [12.0, 35.0, 130.0, 50.0]})
    nothing = [np.nan] * 4

    history = charts.counter_history_chart(counts, forecasts(nothing)).to_dict()
    coming = charts.forecast_chart(forecasts(nothing)).to_dict()

    assert marks(history) == ["line", "line"]
    assert marks(coming) == ["bar"]


def test_the_coming_days_bars_carry_their_intervals_as_whiskers() -> None:
    spec = charts.forecast_chart(forecasts([6.0, 30.0, 90.0, 45.0])).to_dict()

    assert marks(spec) == ["bar", "rule"]
    whisker = spec["layer"][1]["encoding"]
    assert whisker["y"]["field"] == "lower" and whisker["y2"]["field"] == "upper"
