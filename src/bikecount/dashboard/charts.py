"""The dashboard's charts, as Vega-Lite specifications built with Altair.

Vega-Lite draws in the browser from data embedded in the page: the map needs no tile server and
no WebGL (a map tile layer may be missing offline; the points never are). The map is drawn as SVG
over the outlines of the 20 arrondissements (shipped with the package), one ``path`` per counter
and one per arrondissement, so that a browser test can count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import altair as alt
import pandas as pd

from bikecount.dashboard.geography import Feature, load_arrondissements
from bikecount.health.report import HIGH, LOW, OK, OUTAGE, STUCK, UNKNOWN
from bikecount.intervals import DEFAULT_LEVEL

MAP_SELECTION = "counter_pick"
SVG = {"embedOptions": {"renderer": "svg"}}
COLOUR_BY = {
    "forecast_total": "coming day (bikes)",
    "mae": "last day's MAE (bikes/h)",
    "health": "counter health",
}
# One colour per status, in the check's order (worst first): faults loud, ok calm, unknown grey.
HEALTH_COLOURS = {
    OUTAGE: "#d62728",
    STUCK: "#9467bd",
    LOW: "#ff7f0e",
    HIGH: "#1f77b4",
    UNKNOWN: "#bdbdbd",
    OK: "#2ca02c",
}
# The two directions of a site share its coordinates: the second is drawn this far east (about
# 50 m), so that both points can be seen and clicked.
SAME_PLACE_OFFSET_DEGREES = 0.0007
# The city stays in the background: pale land, white borders, grey numbers.
CITY_FILL = "#e9e6df"
CITY_BORDER = "#ffffff"
NUMBER_COLOUR = "#8c8c8c"
# Forecast intervals: the level the pipeline stores (bikecount.intervals), drawn pale.
INTERVAL_SHOWN = f"{DEFAULT_LEVEL:.0%}"
BAND_OPACITY = 0.2


def map_chart(
    frame: pd.DataFrame, colour_by: str, outlines: Sequence[Feature] | None = None
) -> alt.LayerChart:
    """Every counter at its coordinates over the arrondissements (Mercator); click selects one.

    Args:
        frame: columns counter, lat, lon and the ``COLOUR_BY`` columns (NaN: grey point;
            without a ``health`` column every counter's health is unknown).
        colour_by: ``forecast_total``, ``mae`` or ``health``.
        outlines: GeoJSON features of the arrondissements; the shipped ones when None.
    """
    features = list(load_arrondissements() if outlines is None else outlines)
    return alt.LayerChart(
        layer=[arrondissements_layer(features), arrondissement_numbers(features)]
        + [counters_layer(frame, colour_by)],
        height=560,
        usermeta=SVG,
    ).project(type="mercator")


def arrondissements_layer(features: list[Feature]) -> alt.Chart:
    """The arrondissements as light shapes with white borders, named in their tooltip."""
    return (
        alt.Chart(alt.Data(values=features))
        .mark_geoshape(fill=CITY_FILL, stroke=CITY_BORDER, strokeWidth=1.2)
        .encode(
            tooltip=[
                alt.Tooltip("properties.short_name:N", title="arrondissement"),
                alt.Tooltip("properties.name:N", title="name"),
            ]
        )
    )


def arrondissement_numbers(features: list[Feature]) -> alt.Chart:
    """Each arrondissement's number at its label point, quiet under the counters."""
    labels = pd.DataFrame(
        {
            "number": [f["properties"]["number"] for f in features],
            "lon": [f["properties"]["label_lon"] for f in features],
            "lat": [f["properties"]["label_lat"] for f in features],
        }
    )
    return (
        alt.Chart(labels)
        .mark_text(fontSize=13, fontWeight="bold", color=NUMBER_COLOUR)
        .encode(longitude="lon:Q", latitude="lat:Q", text="number:N")
    )


def counters_layer(frame: pd.DataFrame, colour_by: str) -> alt.Chart:
    """The counters' circles, coloured by ``colour_by``, with the click selection."""
    pick = alt.selection_point(fields=["counter"], name=MAP_SELECTION, on="click")
    data = frame.assign(
        forecast_total=frame["forecast_total"].round(0),
        mae=frame["mae"].round(1),
        health=frame["health"] if "health" in frame else UNKNOWN,
        health_reason=frame["health_reason"].fillna("") if "health_reason" in frame else "",
    )[["counter", "lat", "lon", "forecast_total", "mae", "health", "health_reason"]]
    if colour_by == "health":
        # Drawn in data order: the faults last, so that the other direction of a site (50 m
        # away, half under it) never hides one.
        rank = {status: -i for i, status in enumerate(HEALTH_COLOURS)}
        data = data.sort_values("health", key=lambda s: s.map(rank), kind="stable")
    tooltip = [
        alt.Tooltip("counter:N", title="counter"),
        alt.Tooltip("forecast_total:Q", title="coming day (bikes)"),
        alt.Tooltip("mae:Q", title="last day MAE"),
        alt.Tooltip("health:N", title="health"),
    ]
    if colour_by == "health":
        tooltip.append(alt.Tooltip("health_reason:N", title="why"))
    return (
        alt.Chart(data)
        .mark_circle(size=150, opacity=0.95, stroke="#333333", strokeWidth=0.7)
        .encode(longitude="lon:Q", latitude="lat:Q", color=_colour(colour_by), tooltip=tooltip)
        .add_params(pick)
    )


def _colour(colour_by: str) -> alt.Color:
    """A fixed colour per status (every status in the legend, present or not), or a gradient."""
    if colour_by == "health":
        return alt.Color(
            "health:N",
            title=COLOUR_BY[colour_by],
            scale=alt.Scale(domain=list(HEALTH_COLOURS), range=list(HEALTH_COLOURS.values())),
            legend=alt.Legend(orient="bottom", direction="horizontal", symbolStrokeColor="#333333"),
        )
    scheme: Literal["yelloworangered", "purples"] = (
        "yelloworangered" if colour_by == "forecast_total" else "purples"
    )
    return alt.Color(
        f"{colour_by}:Q",
        title=COLOUR_BY[colour_by],
        scale=alt.Scale(scheme=scheme),
        legend=alt.Legend(orient="bottom", gradientLength=320),
    )


def counter_history_chart(counts: pd.DataFrame, forecasts: pd.DataFrame) -> alt.LayerChart:
    """Hourly counts (black) against each version's forecasts (one colour per version), each
    in its interval's band where one was stored."""
    counted = counts.dropna(subset=["count"]).assign(series="counted")
    layers = []
    if not forecasts.empty:
        data = forecasts.assign(version="v" + forecasts["model_version"].astype(str))
        banded = data.dropna(subset=["lower", "upper"]) if "lower" in data else data.iloc[:0]
        if not banded.empty:
            layers.append(
                interval_band(banded, "timestamp:T").encode(
                    color=alt.Color("version:N", title="forecast by")
                )
            )
        layers.append(
            alt.Chart(data)
            .mark_line(strokeDash=[4, 2])
            .encode(
                x="timestamp:T",
                y="prediction:Q",
                color=alt.Color("version:N", title="forecast by"),
                tooltip=["timestamp:T", "prediction:Q", "version:N"],
            )
        )
    counted_line = (
        alt.Chart(counted)
        .mark_line(color="black", strokeWidth=1.5)
        .encode(
            x=alt.X("timestamp:T", title="local time"),
            y=alt.Y("count:Q", title="bikes per hour"),
            tooltip=["timestamp:T", "count:Q"],
        )
    )
    return alt.LayerChart(layer=[counted_line, *layers], height=300, usermeta=SVG)


def interval_band(data: pd.DataFrame, x: str) -> alt.Chart:
    """The forecasts' intervals (columns lower, upper) as a pale band along ``x``."""
    return (
        alt.Chart(data)
        .mark_area(opacity=BAND_OPACITY)
        .encode(
            x=x,
            y=alt.Y("lower:Q"),
            y2="upper:Q",
            tooltip=[
                alt.Tooltip("lower:Q", title=f"{INTERVAL_SHOWN} interval, low", format=".0f"),
                alt.Tooltip("upper:Q", title=f"{INTERVAL_SHOWN} interval, high", format=".0f"),
            ],
        )
    )


def forecast_chart(forecast: pd.DataFrame) -> alt.LayerChart:
    """The coming day's forecast, hour by hour, as bars, each with its interval as a whisker
    where one was stored."""
    data = forecast.assign(hour=forecast["timestamp"].dt.strftime("%H:00"))
    bars = (
        alt.Chart(data)
        .mark_bar(color="#e4572e")
        .encode(
            x=alt.X("hour:O", title="local hour"),
            y=alt.Y("prediction:Q", title="forecast bikes per hour"),
            tooltip=["hour:O", alt.Tooltip("prediction:Q", format=".0f")],
        )
    )
    layers: list[alt.Chart] = [bars]
    banded = data.dropna(subset=["lower", "upper"]) if "lower" in data else data.iloc[:0]
    if not banded.empty:
        layers.append(
            alt.Chart(banded)
            .mark_rule(color="#333333", strokeWidth=1.5)
            .encode(
                x="hour:O",
                y="lower:Q",
                y2="upper:Q",
                tooltip=[
                    "hour:O",
                    alt.Tooltip("lower:Q", title=f"{INTERVAL_SHOWN} interval, low", format=".0f"),
                    alt.Tooltip("upper:Q", title=f"{INTERVAL_SHOWN} interval, high", format=".0f"),
                ],
            )
        )
    return alt.LayerChart(layer=layers, height=260, usermeta=SVG)


def daily_errors_chart(errors: pd.DataFrame) -> alt.Chart:
    """Daily forecast RMSE per model version."""
    data = errors.assign(version="v" + errors["model_version"].astype(str))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day"),
            y=alt.Y("rmse:Q", title="forecast RMSE (bikes/hour)"),
            color=alt.Color("version:N", title="model version"),
            tooltip=["day:T", "version:N", alt.Tooltip("rmse:Q", format=".1f"), "n:Q"],
        )
        .properties(height=280, usermeta=SVG)
    )


def drift_chart(audit: pd.DataFrame) -> alt.Chart:
    """Share of drifted columns at each monitor-and-retrain run; filled points were retrained."""
    return (
        alt.Chart(audit)
        .mark_point(size=90)
        .encode(
            x=alt.X("run_at:T", title="run"),
            y=alt.Y(
                "drift_share:Q", title="share of drifted columns", scale=alt.Scale(domain=[0, 1])
            ),
            shape=alt.Shape("retrained:N"),
            color=alt.Color("promoted:N"),
            tooltip=["run_at:T", "drift_share:Q", "retrained:N", "promoted:N", "reason:N"],
        )
        .properties(height=240, usermeta=SVG)
    )
