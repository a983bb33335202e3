"""The pages' data access, cached: each query's answer reused for ``cache_seconds`` (so moving
between pages does not query again).

The engine and the registry are given (see :mod:`bikecount.dashboard.resources`); the readers
take them as arguments named with a leading underscore, which ``st.cache_data`` leaves out of
its cache key: the key is the store's URL or the tracking URI, and the question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from bikecount.dashboard import api_client, registry_view, store_queries
from bikecount.dashboard.config import DashboardConfig
from bikecount.registry import Registry


@dataclass(frozen=True)
class Queries:
    """Cached readers bound to one configuration, its store's engine and its registry."""

    config: DashboardConfig
    engine: Engine
    registry: Registry

    def summary(self) -> store_queries.StoreSummary:
        return _readers(self.config.cache_seconds).summary(self.engine, self.config.db_url)

    def map_frame(self) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).map_frame(
            self.engine, self.config.db_url, self.config.model_type
        )

    def counters(self, day: date) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).counters(self.engine, self.config.db_url, day)

    def counter_counts(self, counter: str, first: date, last: date) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).counter_counts(
            self.engine, self.config.db_url, counter, first, last
        )

    def counter_forecasts(self, counter: str, first: date, last: date) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).counter_forecasts(
            self.engine, self.config.db_url, counter, first, last, self.config.model_type
        )

    def daily_errors(self, first: date, last: date) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).daily_errors(
            self.engine, self.config.db_url, first, last, self.config.model_type
        )

    def audit(self) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).audit(self.engine, self.config.db_url)

    def model_versions(self, model_type: str) -> pd.DataFrame:
        return _readers(self.config.cache_seconds).model_versions(
            self.registry, self.config.tracking_uri, model_type, self.config.mlflow_ui_url
        )

    def api_health(self) -> api_client.ApiHealth:
        # Not cached: the page must tell at once when the API goes down or comes back.
        return api_client.check_api(self.config.api_url)

    def check_mlflow(self) -> None:
        registry_view.check_mlflow(self.registry)


# The store's URL (``db_url``) and the tracking URI are in every signature for the cache key.


def _summary(_engine: Engine, db_url: str) -> store_queries.StoreSummary:
    return store_queries.read_summary(_engine)


def _map_frame(_engine: Engine, db_url: str, model_type: str) -> pd.DataFrame:
    return store_queries.read_map_frame(_engine, store_queries.read_summary(_engine), model_type)


def _counters(_engine: Engine, db_url: str, day: date) -> pd.DataFrame:
    return store_queries.read_counters(_engine, day)


def _counter_counts(
    _engine: Engine, db_url: str, counter: str, first: date, last: date
) -> pd.DataFrame:
    return store_queries.read_counter_counts(_engine, counter, first, last)


def _counter_forecasts(
    _engine: Engine, db_url: str, counter: str, first: date, last: date, model_type: str
) -> pd.DataFrame:
    return store_queries.read_counter_forecasts(_engine, counter, first, last, model_type)


def _daily_errors(
    _engine: Engine, db_url: str, first: date, last: date, model_type: str
) -> pd.DataFrame:
    return store_queries.read_daily_errors(_engine, first, last, model_type)


def _audit(_engine: Engine, db_url: str) -> pd.DataFrame:
    return store_queries.read_audit(_engine)


def _model_versions(
    _registry: Registry, tracking_uri: str, model_type: str, ui_url: str | None
) -> pd.DataFrame:
    return registry_view.read_model_versions(_registry, model_type, ui_url)


@dataclass(frozen=True)
class _Readers:
    """The readers wrapped in ``st.cache_data`` with one time to live."""

    summary: Callable[[Engine, str], store_queries.StoreSummary]
    map_frame: Callable[[Engine, str, str], pd.DataFrame]
    counters: Callable[[Engine, str, date], pd.DataFrame]
    counter_counts: Callable[[Engine, str, str, date, date], pd.DataFrame]
    counter_forecasts: Callable[[Engine, str, str, date, date, str], pd.DataFrame]
    daily_errors: Callable[[Engine, str, date, date, str], pd.DataFrame]
    audit: Callable[[Engine, str], pd.DataFrame]
    model_versions: Callable[[Registry, str, str, str | None], pd.DataFrame]


@lru_cache
def _readers(ttl: float) -> _Readers:
    cached = st.cache_data(ttl=ttl, show_spinner=False)
    return _Readers(
        summary=cached(_summary),
        map_frame=cached(_map_frame),
        counters=cached(_counters),
        counter_counts=cached(_counter_counts),
        counter_forecasts=cached(_counter_forecasts),
        daily_errors=cached(_daily_errors),
        audit=cached(_audit),
        model_versions=cached(_model_versions),
    )
