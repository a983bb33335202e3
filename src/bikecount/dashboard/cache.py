"""The pages' data access, cached: one Settings, one engine and one MLflow client per process,
and each query's answer reused for ``cache_seconds`` (so moving between pages does not query
again)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, create_engine

from bikecount.config import Settings
from bikecount.dashboard import api_client, registry_view, store_queries
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
    return Registry(get_settings().model_copy(update={"mlflow_tracking_uri": tracking_uri}))


@dataclass(frozen=True)
class Queries:
    """Cached readers bound to one configuration (every argument is part of the cache key)."""

    config: DashboardConfig

    @property
    def engine(self) -> Engine:
        return get_engine(self.config.db_url)

    def summary(self) -> store_queries.StoreSummary:
        return _cached(self.config.cache_seconds)["summary"](self.config.db_url)

    def map_frame(self) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["map_frame"](
            self.config.db_url, self.config.model_type
        )

    def counters(self, day: date) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["counters"](self.config.db_url, day)

    def counter_counts(self, counter: str, first: date, last: date) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["counter_counts"](
            self.config.db_url, counter, first, last
        )

    def counter_forecasts(self, counter: str, first: date, last: date) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["counter_forecasts"](
            self.config.db_url, counter, first, last, self.config.model_type
        )

    def daily_errors(self, first: date, last: date) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["daily_errors"](
            self.config.db_url, first, last, self.config.model_type
        )

    def audit(self) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["audit"](self.config.db_url)

    def model_versions(self, model_type: str) -> pd.DataFrame:
        return _cached(self.config.cache_seconds)["model_versions"](
            self.config.tracking_uri, model_type, self.config.mlflow_ui_url
        )

    def api_health(self) -> api_client.ApiHealth:
        # Not cached: the page must tell at once when the API goes down or comes back.
        return api_client.check_api(self.config.api_url)

    def check_mlflow(self) -> None:
        registry_view.check_mlflow(get_registry(self.config.tracking_uri))


def _summary(db_url: str) -> store_queries.StoreSummary:
    return store_queries.read_summary(get_engine(db_url))


def _map_frame(db_url: str, model_type: str) -> pd.DataFrame:
    engine = get_engine(db_url)
    return store_queries.read_map_frame(engine, store_queries.read_summary(engine), model_type)


def _counters(db_url: str, day: date) -> pd.DataFrame:
    return store_queries.read_counters(get_engine(db_url), day)


def _counter_counts(db_url: str, counter: str, first: date, last: date) -> pd.DataFrame:
    return store_queries.read_counter_counts(get_engine(db_url), counter, first, last)


def _counter_forecasts(
    db_url: str, counter: str, first: date, last: date, model_type: str
) -> pd.DataFrame:
    return store_queries.read_counter_forecasts(
        get_engine(db_url), counter, first, last, model_type
    )


def _daily_errors(db_url: str, first: date, last: date, model_type: str) -> pd.DataFrame:
    return store_queries.read_daily_errors(get_engine(db_url), first, last, model_type)


def _audit(db_url: str) -> pd.DataFrame:
    return store_queries.read_audit(get_engine(db_url))


def _model_versions(tracking_uri: str, model_type: str, ui_url: str | None) -> pd.DataFrame:
    return registry_view.read_model_versions(get_registry(tracking_uri), model_type, ui_url)


@lru_cache
def _cached(ttl: float) -> dict[str, Any]:
    """The readers wrapped in ``st.cache_data`` with the configured time to live."""
    readers: dict[str, Callable[..., Any]] = {
        "summary": _summary,
        "map_frame": _map_frame,
        "counters": _counters,
        "counter_counts": _counter_counts,
        "counter_forecasts": _counter_forecasts,
        "daily_errors": _daily_errors,
        "audit": _audit,
        "model_versions": _model_versions,
    }
    return {name: st.cache_data(ttl=ttl, show_spinner=False)(fn) for name, fn in readers.items()}


def queries() -> Queries:
    """The cached readers of this process's configuration."""
    return Queries(get_config())
