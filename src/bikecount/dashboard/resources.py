"""What one dashboard process holds, built once (``st.cache_resource``): the settings, the
dashboard's configuration, the store's engine and the registry; and the pages' readers bound to
them.

The dashboard's counterpart of an API's ``create_app``: pages take what they read from
:func:`queries`, and nothing below it builds a resource of its own.
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine, create_engine

from bikecount.config import Settings
from bikecount.dashboard.cache import Queries
from bikecount.dashboard.config import DashboardConfig
from bikecount.registry import Registry


@st.cache_resource
def get_settings() -> Settings:
    """The settings, read once per process.

    MLflow's client is bounded by the environment the dashboard is started with
    (``DASHBOARD_MLFLOW_ENV``, in ``bikecount up`` and compose): pages are drawn in Streamlit's
    script threads, where a write of the environment would race with other threads.
    """
    return Settings()


@st.cache_resource
def get_config() -> DashboardConfig:
    """The dashboard's configuration, taken from the settings."""
    return DashboardConfig.from_settings(get_settings())


@st.cache_resource
def get_engine(db_url: str) -> Engine:
    # Read-only use: no table is created (a missing table reads as an empty store).
    return create_engine(db_url)


@st.cache_resource
def get_registry(tracking_uri: str) -> Registry:
    """The one registry of the process (per tracking URI: the configuration names it)."""
    return Registry(get_settings().model_copy(update={"mlflow_tracking_uri": tracking_uri}))


def queries() -> Queries:
    """The cached readers of this process's configuration, store and registry."""
    config = get_config()
    return Queries(config, get_engine(config.db_url), get_registry(config.tracking_uri))
