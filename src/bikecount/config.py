"""One settings object for the whole project: ``BIKECOUNT_*`` environment variables and ``.env``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bikecount.model_types import RegressorType

Env = Literal["dev", "prod"]

DATASET_FILES = {
    "reference": "reference_data.csv",
    "current": "current_data.csv",
    "test_sample": "test_sample.csv",
}


class Settings(BaseSettings):
    """Every tunable of bikecount. Relative paths are resolved against the working directory."""

    model_config = SettingsConfigDict(
        env_prefix="BIKECOUNT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Env = Field(
        default="dev",
        description="`dev` (local artifacts) or `prod` (artifacts in `gs://$BIKECOUNT_GCS_BUCKET`; "
        "needs BIKECOUNT_GCS_BUCKET and BIKECOUNT_API_KEY).",
    )
    data_dir: Path = Field(default=Path("data"), description="Where the data sets live.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="Tracking URI; falls back to MLFLOW_TRACKING_URI, then a local SQLite store.",
    )
    # MLflow's own defaults, 120 s and 7 retries with a doubling backoff, held a call to a dead
    # server for minutes.
    mlflow_request_timeout_seconds: int = Field(
        default=10,
        ge=1,
        description="Seconds per MLflow client request (set as MLflow's "
        "MLFLOW_HTTP_REQUEST_TIMEOUT unless that is set).",
    )
    mlflow_request_retries: int = Field(
        default=2,
        ge=0,
        description="Retries of an MLflow client request (set as MLflow's "
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES unless that is set).",
    )
    mlflow_prefix: str = Field(
        default="bikecount",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="First word of every MLflow name: registered models `<prefix>-rf`..., "
        "experiments `<prefix>-dev`, `<prefix>-monitoring`, `<prefix>-backtest`. Two "
        "installations sharing one tracking server keep their champions apart.",
    )
    mlruns_dir: Path = Field(
        default=Path("mlruns_dev"),
        description="The local SQLite tracking store (`mlflow.db`): the CLI's without a "
        "server, and the backend of the stack's MLflow server.",
    )
    artifacts_dir: Path = Field(
        default=Path("mlflow_artifacts"), description="Local artifact root (dev)."
    )
    gcs_bucket: str | None = Field(
        default=None, description="Bucket of the prod artifacts (required in prod)."
    )
    seed: int = Field(
        default=42, description="Random seed of the generator, sampling and the models."
    )
    holdout_days: int = Field(
        default=14,
        ge=1,
        description="Days held out of the evaluation fit (on data spanning at least four "
        "times as long).",
    )
    outage_hours: int = Field(
        default=24, ge=1, description="Runs of zero counts this long are outages, not fitted on."
    )
    # Day-ahead forecasts (bikecount.forecast).
    forecast_history_days: int = Field(
        default=14,
        ge=1,
        le=60,
        description="Days of a counter's counts read for its gap to the model.",
    )
    forecast_half_life_hours: float = Field(
        default=48.0, gt=0, description="Recency half-life of the weights of that gap."
    )
    forecast_shrink_hours: float = Field(
        default=24.0,
        ge=0,
        description="Hours' worth of weight shrinking the counter's gap towards no gap.",
    )
    forecast_hour_shrink_hours: float = Field(
        default=2.0,
        ge=0,
        description="Weight shrinking the counter's gap at the same hour of the day.",
    )
    forecast_max_factor: float = Field(
        default=3.0, ge=1, description="Cap of the forecast's correction, either way."
    )
    # Prediction intervals (bikecount.intervals).
    interval_days: int = Field(
        default=14,
        ge=1,
        le=60,
        description="Days of the backtest's own past forecasts whose residuals calibrate each "
        "day's intervals (a window that follows city-wide shifts).",
    )
    test_sample_rows: int = Field(
        default=1000, ge=10, description="Rows of `test_sample.csv`, drawn from the reference."
    )
    open_data_url: str = Field(
        default="https://opendata.paris.fr/api/explore/v2.1/catalog/datasets/"
        "comptage-velo-donnees-compteurs/exports/csv?delimiter=%3B&timezone=Europe%2FParis",
        description="The Explore API's CSV export (`;`-separated, dates with their Paris "
        "offset): what `bikecount data fetch` downloads and where ingest asks for a day. Its "
        "headers are the API's field names (`nom_compteur`, `sum_counts`...) unless "
        "`use_labels=true`; both are read.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Key of the APIs' write endpoints (header `X-API-Key`); required in prod.",
    )
    api_instance: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:@-]+$",
        description="The API's name on the training runs it starts (tag `api_instance`); at "
        "start, an API marks FAILED the runs of its instance left RUNNING by a process of it "
        "that died. One name per replica.",
    )
    # `bikecount up`.
    host: str = Field(
        default="127.0.0.1", description="Interface the local stack binds (this machine only)."
    )
    mlflow_port: int = Field(default=5000, ge=1, le=65535, description="MLflow tracking server.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="RegModel API.")
    classmodel_port: int = Field(
        default=8080, ge=1, le=65535, description="Legacy ClassModel API (`bikecount up --legacy`)."
    )
    prometheus_port: int = Field(
        default=9090, ge=1, le=65535, description="Prometheus (`bikecount up --monitoring`)."
    )
    logs_dir: Path = Field(
        default=Path("logs"), description="The services' logs (`<service>.log`) and configs."
    )
    stack_max_restarts: int = Field(
        default=5,
        ge=0,
        description="`bikecount up` stops when one service crashes more than this many times "
        "within the window; the others keep running meanwhile.",
    )
    stack_restart_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        description="First pause before a crashed service is restarted (doubling, at most 30 s).",
    )
    stack_restart_window_seconds: float = Field(
        default=300.0, gt=0, description="Window in which crashes are counted."
    )
    # Training bounds (bikecount.models.limits).
    train_max_model_mb: float = Field(
        default=200.0,
        gt=0,
        description="A training whose fitted model's estimated size is above this is refused "
        "before it starts.",
    )
    train_max_fit_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="A training whose fits' estimated time is above this is refused before it "
        "starts.",
    )
    train_time_limit_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A training still running after this is stopped (run FAILED).",
    )
    max_records: int = Field(default=10_000, ge=1, description="Records per `/predict` request.")
    model_check_seconds: float = Field(
        default=10.0, ge=0, description="How often the APIs look for a new champion."
    )
    drift_share_threshold: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of drifted columns that means the data set drifted.",
    )
    drift_method: str | None = Field(
        default=None,
        description="Evidently's per-column drift test; unset: chosen by column type and size.",
    )
    drift_column_threshold: float | None = Field(
        default=None,
        gt=0,
        description="Threshold of that test; unset: Evidently's default for it.",
    )
    drift_sample_rows: int = Field(
        default=100_000, ge=100, description="Rows sampled from each side of a drift check."
    )
    reports_dir: Path = Field(default=Path("reports"), description="Where drift reports go.")
    reports_keep: int = Field(
        default=20,
        ge=1,
        description="Drift reports kept (a few MB of HTML each, also logged to MLflow).",
    )
    monitor_max_records: int = Field(
        default=50_000, ge=1, description="Records per `/monitor` request."
    )
    # `bikecount pipeline` and the Airflow DAGs.
    pipeline_db_url: str = Field(
        default="sqlite:///pipeline.db",
        description="The pipeline store of raw counts, predictions and audit (any SQLAlchemy URL).",
    )
    store_busy_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How long a read or write of the pipeline store waits for another "
        "writer's lock (SQLite's busy timeout; PostgreSQL's `lock_timeout`, and twice this as "
        "`statement_timeout` of its writes) before it is refused: nothing is written, exit "
        "code 75.",
    )
    pipeline_api_url: str = Field(
        default="http://127.0.0.1:8000", description="The RegModel API the pipeline calls."
    )
    pipeline_open_data: bool = Field(default=True, description="Ingest asks Paris Open Data first.")
    pipeline_source: str | None = Field(
        default=None,
        description="What ingest reads when Open Data is off or unreachable: a file-drop "
        "folder, one export file, or `synthetic`. Unset: the generator in dev, nothing in prod "
        "(generated counts must never reach a production store).",
    )
    pipeline_model_type: RegressorType = Field(
        default="ensemble",
        description="The model the pipeline predicts with and watches, the dashboard shows, "
        "`bikecount up` trains first and `bikecount backtest` replays by default (the "
        "ensemble of rf and gbm forecasts best day ahead: docs/benchmarks.md).",
    )
    pipeline_recent_days: int = Field(
        default=14, ge=1, description="Recent stored days checked for drift and decay."
    )
    pipeline_batch_size: int = Field(
        default=5000, ge=1, description="Records per `/predict` request of the pipeline."
    )
    pipeline_max_rejected_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="An ingest rejecting a larger share of its rows fails its run.",
    )
    pipeline_reingest_min_share: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="A re-ingest leaving a stored day with fewer than this share of its rows "
        "is refused unless forced: a partial export must not silently replace a complete day.",
    )
    pipeline_retries: int = Field(
        default=2, ge=0, description="Airflow task retries (an API restarting, Open Data late)."
    )
    pipeline_retry_delay_seconds: float = Field(
        default=300.0, ge=0, description="Pause between Airflow task retries."
    )
    pipeline_test_mode: bool = Field(
        default=False,
        description="Retrain with the API's fast test-mode settings (demos and tests only).",
    )
    retrain_r2_threshold: float = Field(
        default=0.6,
        description="Retrain when drift is detected and the champion's recent R² is below this.",
    )
    retrain_decay_ratio: float = Field(
        default=1.5,
        gt=1,
        description="Retrain, whatever the drift, when the champion's recent error share "
        "(1 - R²) is at least this many times its holdout's (decay).",
    )
    # Alerts: Alertmanager of `bikecount up --monitoring` and of compose profile `monitoring`.
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="Generic webhook receiving alerts (Alertmanager's JSON)."
    )
    alert_slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack (or Slack-compatible) incoming webhook."
    )
    alert_discord_webhook_url: SecretStr | None = Field(
        default=None, description="Discord webhook."
    )
    alert_group_wait_seconds: int = Field(
        default=30, ge=0, description="Alertmanager's wait before the first message of a group."
    )
    alert_group_interval_seconds: int = Field(
        default=300, ge=1, description="Alertmanager's pause between messages of a changing group."
    )
    alert_repeat_interval_minutes: int = Field(
        default=240, ge=1, description="Alertmanager's pause before repeating an unchanged group."
    )
    alertmanager_port: int = Field(
        default=9093, ge=1, le=65535, description="Alertmanager (`bikecount up --monitoring`)."
    )
    alertmanager_url: str | None = Field(
        default=None,
        description="The Alertmanager the daily counter health check posts counter faults to "
        "(its base URL, e.g. http://127.0.0.1:9093). Unset: faults are stored and shown on the "
        "map, not alerted.",
    )
    # `bikecount up --airflow`.
    airflow_home: Path = Field(
        default=Path("airflow_home"),
        description="Airflow's home: config, SQLite metadata, task logs.",
    )
    airflow_port: int = Field(default=8081, ge=1, le=65535, description="Airflow's UI and API.")
    # The dashboard (Streamlit, started by `bikecount up`).
    dashboard_port: int = Field(default=8501, ge=1, le=65535, description="The dashboard.")
    dashboard_cache_seconds: float = Field(
        default=30.0, ge=0, description="How long the dashboard reuses a query's answer."
    )
    dashboard_history_days: int = Field(
        default=7, ge=1, le=62, description="Days of a counter's history on its page."
    )
    dashboard_errors_days: int = Field(
        default=60, ge=1, le=366, description="Days of daily forecast errors shown."
    )
    # The APIs' /health answers from a background probe of MLflow, never waiting on it.
    health_refresh_seconds: float = Field(
        default=3.0,
        gt=0,
        le=3600,
        description="How often the APIs probe MLflow in the background for `/health`.",
    )

    @model_validator(mode="after")
    def _check_prod(self) -> Settings:
        self.check_env(self.env)
        return self

    @model_validator(mode="after")
    def _check_prod_api_key(self) -> Settings:
        # The write endpoints of a prod API must never be open.
        if self.env == "prod" and not (self.api_key and self.api_key.get_secret_value()):
            raise ValueError("BIKECOUNT_ENV=prod needs BIKECOUNT_API_KEY (the APIs' write key)")
        return self

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force: ours, then MLFLOW_TRACKING_URI, then local SQLite."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return self.local_tracking_store

    @property
    def local_tracking_store(self) -> str:
        """The SQLite store under ``mlruns_dir``: the CLI's without a server, the local
        server's backend."""
        return f"sqlite:///{(self.mlruns_dir / 'mlflow.db').resolve()}"

    def experiment_name(self, env: Env | None = None) -> str:
        """The training experiment of ``env``: ``<prefix>-<env>``."""
        return self.mlflow_name(env or self.env)

    def mlflow_name(self, name: str) -> str:
        """What bikecount calls ``name`` in MLflow: a registered model (``rf``), an experiment
        (``monitoring``)."""
        return f"{self.mlflow_prefix}-{name}"

    def check_env(self, env: Env) -> None:
        """Whether runs of ``env`` can be stored here: ``prod`` needs the artifacts' bucket.

        Raises:
            ValueError: env is prod and BIKECOUNT_GCS_BUCKET is not set.
        """
        if env == "prod" and not self.gcs_bucket:
            raise ValueError(
                "env=prod needs BIKECOUNT_GCS_BUCKET (the gs:// bucket for its artifacts)"
            )

    def artifact_root(self, env: Env | None = None) -> str:
        """Where a new experiment of ``env`` stores its artifacts."""
        env = env or self.env
        self.check_env(env)
        if env == "prod":
            return f"gs://{self.gcs_bucket}/mlflow"
        return self.artifacts_dir.resolve().as_uri()

    @property
    def ingest_fallback(self) -> str | None:
        """The source ingest reads when Paris Open Data is off or unreachable."""
        if self.pipeline_source:
            return self.pipeline_source
        return "synthetic" if self.env == "dev" else None

    def dataset_path(self, name: str) -> Path:
        """The file behind a data set name (``reference``, ``current``, ``test_sample``)."""
        return self.data_dir / DATASET_FILES[name]
