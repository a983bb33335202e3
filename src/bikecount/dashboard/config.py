"""Where the dashboard finds its data: the store, the registry, the API, from the one Settings."""

from __future__ import annotations

from dataclasses import dataclass

from bikecount.config import Settings
from bikecount.models import MODEL_TYPES
from bikecount.registry import is_remote, shown_uri


@dataclass(frozen=True)
class DashboardConfig:
    """What the pages read, taken from :class:`~bikecount.config.Settings`.

    Attributes:
        db_url: the pipeline store (``BIKECOUNT_PIPELINE_DB_URL``).
        api_url: the RegModel API (``BIKECOUNT_PIPELINE_API_URL``).
        tracking_uri: the MLflow tracking server and registry.
        api_key: sent to the API when set.
        model_type: the type the daily pipeline forecasts with (the store's forecasts).
        history_days: days of counts against forecasts on a counter's page.
        errors_days: days of daily forecast errors on the monitoring page.
        cache_seconds: how long a query's answer is reused.
        max_records: records per ``POST /predict`` request (the API's bound, same setting).
    """

    db_url: str
    api_url: str
    tracking_uri: str
    api_key: str | None
    model_type: str
    history_days: int
    errors_days: int
    cache_seconds: float
    max_records: int
    model_types: tuple[str, ...] = MODEL_TYPES

    @classmethod
    def from_settings(cls, settings: Settings) -> DashboardConfig:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        return cls(
            db_url=settings.pipeline_db_url,
            api_url=settings.pipeline_api_url,
            tracking_uri=settings.tracking_uri,
            api_key=key or None,
            model_type=settings.pipeline_model_type,
            history_days=settings.dashboard_history_days,
            errors_days=settings.dashboard_errors_days,
            cache_seconds=settings.dashboard_cache_seconds,
            max_records=settings.max_records,
        )

    @property
    def shown_tracking_uri(self) -> str:
        """The tracking URI as pages show it: no credentials (viewers are not its users)."""
        return shown_uri(self.tracking_uri)

    @property
    def mlflow_ui_url(self) -> str | None:
        """The MLflow UI (the tracking server itself, credentials left out), None for a local
        store."""
        return self.shown_tracking_uri if is_remote(self.tracking_uri) else None
