"""The Streamlit entry point: ``streamlit run src/bikecount/dashboard/app.py``.

``bikecount up`` starts it (see ``bikecount.stack.services.dashboard_service``).
"""

from __future__ import annotations

import streamlit as st

from bikecount.dashboard import api_client, registry_view
from bikecount.dashboard.pages import all_pages
from bikecount.dashboard.resources import queries


def render_sidebar() -> None:
    """Where the data comes from and whether each source answers."""
    data = queries()
    config = data.config
    with st.sidebar:
        st.markdown("### Sources")
        try:
            health = data.api_health()
            st.markdown(f":green[:material/check_circle:] API {config.api_url} ({health.status})")
        except api_client.ApiError:
            st.markdown(f":red[:material/cancel:] API {config.api_url} down")
        try:
            data.check_mlflow()
            st.markdown(f":green[:material/check_circle:] MLflow {config.shown_tracking_uri}")
        except registry_view.RegistryUnavailableError:
            st.markdown(f":red[:material/cancel:] MLflow {config.shown_tracking_uri} down")
        summary = data.summary()
        if summary.empty:
            st.markdown(":gray[:material/radio_button_unchecked:] store empty")
        else:
            st.markdown(
                f":green[:material/check_circle:] store: {summary.counters} counters, "
                f"counts to {summary.last_count_day}, "
                f"forecasts to {summary.last_forecast_day}"
            )


def main() -> None:
    st.set_page_config(page_title="bikecount", page_icon=":material/pedal_bike:", layout="wide")
    navigation = st.navigation(all_pages())
    render_sidebar()
    navigation.run()


if __name__ == "__main__":
    main()
