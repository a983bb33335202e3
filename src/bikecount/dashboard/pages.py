"""The dashboard's pages: Map, Counter, Models, Monitoring and Ask the model.

Each page is a function that reads through :func:`bikecount.dashboard.resources.queries` and
draws with Streamlit; what it computes lives in the data modules, so the pages only lay things
out. A missing piece (store empty, API or MLflow down, no champion) is shown as a state that says
what to run.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from bikecount.dashboard import api_client, charts, states
from bikecount.dashboard.ask_file import render_file_forecast
from bikecount.dashboard.cache import Queries
from bikecount.dashboard.geography import ATTRIBUTION_TEXT as ARRONDISSEMENTS_ATTRIBUTION
from bikecount.dashboard.registry_view import RegistryUnavailableError, metric_columns
from bikecount.dashboard.resources import queries
from bikecount.dashboard.store_queries import FilledStore, summarise_counter_days
from bikecount.health import FAULTS

COUNTER_PARAM = "counter"
ASK_ANSWER = "ask_answer"
README_COUNTER = "Totem 73 boulevard de Sébastopol S-N"
ATTRIBUTION = (
    "Counters: Paris Open Data, « Comptage vélo - Données compteurs » (ODbL). "
    "Counts on a fresh stack are generated from their levels and rhythms."
)


def counter_page() -> st.Page:
    return st.Page(
        render_counter, title="Counter", icon=":material/show_chart:", url_path="counter"
    )


def all_pages() -> list[st.Page]:
    """The pages in menu order; the map is the default."""
    return [
        st.Page(render_map, title="Map", icon=":material/map:", url_path="map", default=True),
        counter_page(),
        st.Page(render_models, title="Models", icon=":material/emoji_events:", url_path="models"),
        st.Page(
            render_monitoring,
            title="Monitoring",
            icon=":material/monitor_heart:",
            url_path="monitoring",
        ),
        st.Page(render_ask, title="Ask the model", icon=":material/chat:", url_path="ask"),
    ]


def _store_or_stop(data: Queries) -> FilledStore:
    """The store summary; when the store is empty, say so and stop the page there."""
    summary = data.summary().filled()
    if summary is None:
        st.warning(states.store_empty(data.config.db_url), icon=":material/database:")
        st.stop()
    return summary


def render_map() -> None:
    """Every counter at its coordinates over the arrondissements, coloured by its coming-day
    forecast, last-day error or latest checked health."""
    data = queries()
    st.title("Paris bike counters")
    summary = _store_or_stop(data)
    frame = data.map_frame()
    has_forecast = frame["forecast_total"].notna().any()
    health_day = frame["health_day"].dropna().max()
    options = {
        f"forecast of {summary.coming_day}": "forecast_total",
        f"forecast error on {summary.last_count_day}": "mae",
        "health" if pd.isna(health_day) else f"health on {health_day}": "health",
    }
    choice = st.radio("Colour by", list(options), horizontal=True, key="map_colour")
    colour_by = options[choice]
    if colour_by == "health" and pd.isna(health_day):
        st.info(states.no_health(summary.last_count_day), icon=":material/schedule:")
    elif not has_forecast:
        st.info(states.no_forecast(summary.coming_day), icon=":material/schedule:")
    event = st.altair_chart(
        charts.map_chart(frame, colour_by), on_select="rerun", key="map", width="stretch"
    )
    if colour_by == "health" and not pd.isna(health_day):
        faults = int(frame["health"].isin(FAULTS).sum())
        st.caption(
            f"Health checked on {health_day}: {faults} of {len(frame)} counters with a fault "
            "(hover one for why; `bikecount health` for the method)."
        )
    st.caption(
        f"{len(frame)} counters counted on {summary.last_count_day}; "
        f"{data.config.model_type} forecasts. Click a counter to open its page. {ATTRIBUTION} "
        f"{ARRONDISSEMENTS_ATTRIBUTION}"
    )
    picked = _picked_counter(event)
    if picked:
        st.switch_page(counter_page(), query_params={COUNTER_PARAM: picked})
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    counter = left.selectbox("Or choose a counter", frame["counter"], index=None, key="map_pick")
    if right.button("Open its page", disabled=counter is None) and counter is not None:
        st.switch_page(counter_page(), query_params={COUNTER_PARAM: counter})
    busiest = frame.sort_values("forecast_total", ascending=False).head(5)
    if has_forecast:
        st.subheader(f"Busiest counters on {summary.coming_day} (forecast)")
        st.table(
            busiest[["counter", "forecast_total", "peak_forecast"]]
            .rename(columns={"forecast_total": "bikes (day)", "peak_forecast": "peak hour"})
            .round(0)
            .set_index("counter")
        )


def _picked_counter(event: object) -> str | None:
    selection = getattr(event, "selection", None) or {}
    points = selection.get(charts.MAP_SELECTION) if hasattr(selection, "get") else None
    if points:
        return str(points[0].get("counter")) if isinstance(points[0], dict) else None
    return None


def render_counter() -> None:
    """A counter's last days of counts against their forecasts, and the coming day's forecast."""
    data = queries()
    summary = _store_or_stop(data)
    counters = data.counters(summary.last_count_day)["counter"].tolist()
    wanted = st.query_params.get(COUNTER_PARAM) or (
        README_COUNTER if README_COUNTER in counters else counters[0]
    )
    if wanted not in counters:
        st.warning(states.unknown_counter(wanted), icon=":material/help:")
        wanted = counters[0]
    counter = st.selectbox("Counter", counters, index=counters.index(wanted), key="counter_pick")
    st.query_params[COUNTER_PARAM] = counter
    st.title(counter)
    last = summary.last_count_day
    first = last - timedelta(days=data.config.history_days - 1)
    counts = data.counter_counts(counter, first, last)
    forecasts = data.counter_forecasts(counter, first, summary.coming_day)
    past = forecasts[forecasts["day"] <= last]
    coming = forecasts[forecasts["day"] == summary.coming_day]
    coming = coming[coming["model_version"] == coming["model_version"].max()]
    days = summarise_counter_days(counts, past)
    _counter_metrics(days, coming, last, summary.coming_day)
    st.subheader(f"Counts against forecasts, {first} to {last}")
    st.altair_chart(charts.counter_history_chart(counts, past), width="stretch")
    st.subheader(f"Forecast of {summary.coming_day}, hour by hour")
    if coming.empty:
        st.info(states.no_forecast(summary.coming_day), icon=":material/schedule:")
    else:
        st.altair_chart(charts.forecast_chart(coming), width="stretch")
        st.caption(f"by {data.config.model_type} v{int(coming['model_version'].iloc[0])}")
    st.subheader("Day by day")
    st.table(_format_days(days))


def _counter_metrics(
    days: pd.DataFrame, coming: pd.DataFrame, last: date, coming_day: date
) -> None:
    left, middle, right = st.columns(3)
    if coming.empty:
        left.metric(f"Forecast of {coming_day}", "none yet")
    else:
        peak = coming.loc[coming["prediction"].idxmax()]
        left.metric(f"Forecast of {coming_day}", f"{coming['prediction'].sum():,.0f} bikes")
        middle.metric("Forecast peak", f"{peak['prediction']:,.0f} at {peak['timestamp']:%H:00}")
    last_rows = days[days["day"] == last]
    if not last_rows.empty:
        row = last_rows.iloc[-1]
        forecast = "no forecast" if pd.isna(row["forecast"]) else f"forecast {row['forecast']:,.0f}"
        right.metric(f"Counted on {last}", f"{row['counted']:,.0f} bikes", forecast, "off")


def _format_days(days: pd.DataFrame) -> pd.DataFrame:
    """The day table as the page shows it: whole bikes, MAE to one decimal, version as vN."""
    shown = pd.DataFrame(
        {
            "day": days["day"].astype(str),
            "forecast by": ["—" if pd.isna(v) else f"v{int(v)}" for v in days["model_version"]],
            "counted (bikes)": days["counted"].map(_whole),
            "forecast (bikes)": days["forecast"].map(_whole),
            "MAE (bikes/hour)": days["mae"].map(lambda v: "—" if pd.isna(v) else f"{v:.1f}"),
        }
    )
    return shown.set_index("day")


def _whole(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.0f}"


def render_models() -> None:
    """Per model type: the champion and every version with its holdout metrics and decision."""
    data = queries()
    st.title("Models")
    try:
        data.check_mlflow()
    except RegistryUnavailableError as exc:
        down = states.mlflow_down(data.config.shown_tracking_uri, str(exc))
        st.warning(down, icon=":material/power_off:")
        st.stop()
    if data.config.mlflow_ui_url:
        st.markdown(f"Everything here comes from the [MLflow UI]({data.config.mlflow_ui_url}).")
    for model_type in data.config.model_types:
        versions = data.model_versions(model_type)
        st.subheader(model_type)
        if versions.empty or not versions["champion"].any():
            st.info(states.no_champion(model_type), icon=":material/egg:")
            if versions.empty:
                continue
        else:
            champion = versions[versions["champion"]].iloc[0]
            kind = "test mode" if champion["test_mode"] else "full data"
            st.markdown(
                f"**Champion: v{champion['version']}** ({kind}), registered "
                f"{champion['registered']:%Y-%m-%d %H:%M} UTC — {champion['decision'] or ''}"
            )
        st.dataframe(
            _format_versions(versions, model_type),
            hide_index=True,
            column_config={
                "run": st.column_config.LinkColumn("run", display_text="MLflow run"),
                "model": st.column_config.LinkColumn("model", display_text="version"),
            },
        )


def _format_versions(versions: pd.DataFrame, model_type: str) -> pd.DataFrame:
    shown = versions.assign(
        champion=versions["champion"].map({True: "★", False: ""}),
        registered=versions["registered"].dt.strftime("%Y-%m-%d %H:%M"),
    )
    columns = [
        "version", "champion", "test_mode", "registered", *metric_columns(model_type),
        "trained_until", "rows_fit", "decision",
    ]  # fmt: skip
    shown = shown[columns].round(4)
    if "run_link" in versions:
        shown["run"] = versions["run_link"]
        shown["model"] = versions["version_link"]
    return shown


def render_monitoring() -> None:
    """Drift and retraining decisions over time, and daily forecast errors per version."""
    data = queries()
    st.title("Monitoring")
    summary = _store_or_stop(data)
    st.subheader("Drift and retraining decisions")
    audit = data.audit()
    if audit.empty:
        st.info(states.no_audit(), icon=":material/list_alt:")
    else:
        st.altair_chart(charts.drift_chart(audit), width="stretch")
        st.dataframe(audit, hide_index=True)
    st.subheader(f"Daily forecast errors of {data.config.model_type}, per model version")
    last = summary.last_count_day
    errors = data.daily_errors(last - timedelta(days=data.config.errors_days - 1), last)
    if errors.empty:
        st.info(states.no_daily_errors(), icon=":material/trending_down:")
        return
    st.altair_chart(charts.daily_errors_chart(errors), width="stretch")
    by_version = errors.groupby("model_version").agg(
        days=("day", "count"), mean_rmse=("rmse", "mean"), mean_mae=("mae", "mean")
    )
    st.table(by_version.rename(columns={"mean_rmse": "mean RMSE", "mean_mae": "mean MAE"}).round(1))


def render_ask() -> None:
    """Ask ``POST /predict`` about chosen counters and hours, or about a whole uploaded file."""
    data = queries()
    st.title("Ask the model")
    try:
        health = data.api_health()
    except api_client.ApiError as exc:
        st.warning(states.api_down(data.config.api_url, str(exc)), icon=":material/power_off:")
        st.stop()
    by_counter, by_file = st.tabs(["Counters and hours", "A file of records"])
    with by_file:
        render_file_forecast(data, health)
    with by_counter:
        _ask_about_counters(data, health)


def _ask_about_counters(data: Queries, health: api_client.ApiHealth) -> None:
    """Choose counters, a day and hours; the answer comes from ``POST /predict``."""
    summary = _store_or_stop(data)
    counters = data.counters(summary.last_count_day)
    names = counters["counter"].tolist()
    default = [README_COUNTER] if README_COUNTER in names else names[:1]
    with st.form("ask"):
        chosen = st.multiselect("Counters", names, default=default, key="ask_counters")
        day = st.date_input("Day", value=summary.coming_day, key="ask_day")
        hours = st.multiselect("Hours (local time)", list(range(24)), default=[8], key="ask_hours")
        model_type = st.selectbox(
            "Model type",
            data.config.model_types,
            index=data.config.model_types.index(data.config.model_type),
            key="ask_model_type",
        )
        asked = st.form_submit_button("Ask the model")
    if health.models.get(model_type) is None:
        st.warning(states.no_champion(model_type), icon=":material/egg:")
        return
    if asked:
        selected = counters[counters["counter"].isin(chosen)]
        records = api_client.build_records(selected, day, sorted(hours))
        if not records:
            st.info("Choose at least one counter and one hour.")
            return
        try:
            answer = api_client.predict(
                data.config.api_url, records, model_type, data.config.api_key
            )
        except api_client.ApiError as exc:
            st.warning(states.api_down(data.config.api_url, str(exc)), icon=":material/power_off:")
            return
        st.session_state[ASK_ANSWER] = (records, answer)
    if ASK_ANSWER in st.session_state:
        records, answer = st.session_state[ASK_ANSWER]
        _show_answer(records, answer)


def _show_answer(records: list[dict[str, str]], answer: api_client.PredictAnswer) -> None:
    st.subheader(f"{answer['model_type']} v{answer['model_version']} answers")
    table = pd.DataFrame(
        {
            "counter": [r["nom_du_compteur"] for r in records],
            "time": [r["date_et_heure_de_comptage"] for r in records],
            "prediction": [f"{float(p):.1f}" for p in answer["predictions"]],
        }
    )
    if answer.get("labels"):
        table["label"] = answer["labels"]
    st.table(table.set_index(["counter", "time"]))
    with st.expander("The request sent to POST /predict"):
        st.json({"records": records, "model_type": answer["model_type"]})
