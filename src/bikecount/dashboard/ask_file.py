""" "Ask the model" for a whole file: upload an export file, download its forecasts as a CSV.

The checking and the table are :mod:`bikecount.dashboard.batch`'s; this module lays them out and
asks the API, in batches within its bound on records per request.
"""

from __future__ import annotations

from pathlib import PurePath

import pandas as pd
import streamlit as st

from bikecount.dashboard import api_client, batch, states
from bikecount.dashboard.cache import Queries

FILE_ANSWER = "ask_file_answer"
SHOWN_ROWS = 20
SHOWN_ISSUES = 200


def render_file_forecast(data: Queries, health: api_client.ApiHealth) -> None:
    """Upload, check, forecast and offer the CSV; a bad file is a message, never a trace."""
    st.markdown(
        "An export file of Paris's counters in any spelling (the portal's French labels, the "
        "Explore API's field names or snake_case), as `;`-CSV, `.csv.gz`, parquet or JSON "
        "records. Each valid record is forecast; the CSV given back is your rows plus "
        "`prediction` (and `lower`/`upper` where the API gives intervals)."
    )
    upload = st.file_uploader("Export file", type=list(batch.UPLOAD_TYPES), key="ask_file")
    if upload is None:
        st.session_state.pop(FILE_ANSWER, None)
        return
    try:
        checked = batch.check_upload(batch.read_upload(upload.name, upload.getvalue()))
    except batch.UploadError as exc:
        st.error(f"**{upload.name} cannot be forecast**: {exc}", icon=":material/block:")
        return
    _show_refused(checked)
    model_type = st.selectbox(
        "Model type",
        data.config.model_types,
        index=data.config.model_types.index(data.config.model_type),
        key="ask_file_model_type",
    )
    if health.models.get(model_type) is None:
        st.warning(states.no_champion(model_type), icon=":material/egg:")
        return
    valid = len(checked.parsed.frame)
    asked = (upload.file_id, model_type)
    if st.button(f"Forecast {valid:,} records", key="ask_file_go"):
        try:
            table = _forecast(data, checked, model_type)
        except api_client.ApiError as exc:
            st.warning(states.api_down(data.config.api_url, str(exc)), icon=":material/power_off:")
            return
        st.session_state[FILE_ANSWER] = (asked, table)
    answer = st.session_state.get(FILE_ANSWER)
    if answer is not None and answer[0] == asked:
        _show_forecasts(answer[1], model_type, upload.name)


def _forecast(data: Queries, checked: batch.CheckedUpload, model_type: str) -> pd.DataFrame:
    """The API's forecasts of the valid records, batch by batch, with a progress bar."""
    config = data.config
    interval = batch.INTERVAL_LEVEL if api_client.accepts_interval(config.api_url) else None
    progress = st.progress(0.0, text="asking POST /predict")
    answers = api_client.predict_in_batches(
        config.api_url,
        checked.records,
        model_type,
        config.max_records,
        config.api_key,
        interval,
        on_batch=lambda done, total: progress.progress(
            done / total, text=f"batch {done} of {total} answered"
        ),
    )
    progress.empty()
    return batch.forecast_table(checked, answers)


def _show_refused(checked: batch.CheckedUpload) -> None:
    parsed = checked.parsed
    if not parsed.issues:
        st.success(f"{parsed.total_rows:,} records, all valid.", icon=":material/check:")
        return
    st.warning(
        f"**{parsed.dropped_rows:,} of {parsed.total_rows:,} records refused**, left out of the "
        f"forecasts: {batch.issues_summary(parsed)}.",
        icon=":material/rule:",
    )
    refused = batch.refused_rows(parsed)
    st.dataframe(refused.head(SHOWN_ISSUES), hide_index=True, key="ask_file_refused")
    if len(refused) > SHOWN_ISSUES:
        st.caption(f"The first {SHOWN_ISSUES} of {len(refused):,} problems.")


def _show_forecasts(table: pd.DataFrame, model_type: str, name: str) -> None:
    versions = sorted(set(table["model_version"]))
    by = ", ".join(f"v{version}" for version in versions)
    intervals = "with" if "lower" in table else "without"
    st.subheader(f"{len(table):,} forecasts by {model_type} {by}, {intervals} intervals")
    st.dataframe(table.head(SHOWN_ROWS), hide_index=True, key="ask_file_forecasts")
    st.download_button(
        "Download the forecasts (CSV)",
        data=batch.to_csv_bytes(table),
        file_name=f"{PurePath(name).name.split('.')[0]}-forecasts.csv",
        mime="text/csv",
        key="ask_file_download",
        icon=":material/download:",
    )
