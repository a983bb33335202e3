"""One settings object for the whole project: ``BIKECOUNT_*`` environment variables and ``.env``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bikecount.models.catalog import RegressorType

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

    env: Env = "dev"
    data_dir: Path = Path("data")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="Tracking URI; falls back to MLFLOW_TRACKING_URI, then a local SQLite store.",
    )
    # MLflow's HTTP client: seconds per request and retries (its defaults, 120 s and 7 retries
    # with a doubling backoff, held a call to a dead server for minutes).
    mlflow_request_timeout_seconds: int = Field(default=10, ge=1)
    mlflow_request_retries: int = Field(default=2, ge=0)
    # The first word of every name bikecount gives in MLflow (registered models
    # ``<prefix>-rf``..., experiments ``<prefix>-dev``, ``<prefix>-monitoring``...): two
    # installations, or two test modules, can share one tracking server and keep their
    # champions apart.
    mlflow_prefix: str = Field(default="bikecount", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    mlruns_dir: Path = Path("mlruns_dev")
    artifacts_dir: Path = Path("mlflow_artifacts")
    gcs_bucket: str | None = None
    seed: int = 42
    holdout_days: int = Field(default=14, ge=1)
    outage_hours: int = Field(
        default=24, ge=1, description="Runs of zero counts this long are outages, not fitted on."
    )
    # Day-ahead forecasts move the model by each counter's recent gap to the counts (see
    # bikecount.forecast): over these days, weighted by this half-life, shrunk by this many
    # hours' worth of weight, and never by more than this factor either way.
    forecast_history_days: int = Field(default=14, ge=1, le=60)
    forecast_half_life_hours: float = Field(default=48.0, gt=0)
    forecast_shrink_hours: float = Field(default=24.0, ge=0)
    # ... then by each counter's gap at the same hour of the day, shrunk by this much weight.
    forecast_hour_shrink_hours: float = Field(default=2.0, ge=0)
    forecast_max_factor: float = Field(default=3.0, ge=1)
    test_sample_rows: int = Field(default=1000, ge=10)
    # The Explore API's CSV export: ";"-separated, dates with their Paris offset. Its headers are
    # the field names (nom_compteur, sum_counts...) unless use_labels=true; both are read.
    open_data_url: str = (
        "https://opendata.paris.fr/api/explore/v2.1/catalog/datasets/"
        "comptage-velo-donnees-compteurs/exports/csv?delimiter=%3B&timezone=Europe%2FParis"
    )
    api_key: SecretStr | None = None
    # Which API owns a training run (tag api_instance): at start, an API marks FAILED the runs
    # of its instance left RUNNING by a process of it that died. One name per replica.
    api_instance: str = Field(
        default_factory=socket.gethostname, min_length=1, pattern=r"^[A-Za-z0-9_.:@-]+$"
    )
    # `bikecount up`: where the local stack listens (loopback only by default) and logs.
    host: str = "127.0.0.1"
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    api_port: int = Field(default=8000, ge=1, le=65535)
    classmodel_port: int = Field(default=8080, ge=1, le=65535)
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    logs_dir: Path = Path("logs")
    # `bikecount up` restarts a crashed service after a backoff doubling from this many seconds
    # (at most 30 s), and stops the stack when one crashes more than this many times in the
    # window; the other services keep running meanwhile.
    stack_max_restarts: int = Field(default=5, ge=0)
    stack_restart_backoff_seconds: float = Field(default=1.0, gt=0)
    stack_restart_window_seconds: float = Field(default=300.0, gt=0)
    # Training: refused before it starts when the fitted model's estimated size or its fit's
    # estimated time is above these (bikecount.models.limits), stopped (run FAILED) when it
    # runs longer than the time limit.
    train_max_model_mb: float = Field(default=200.0, gt=0)
    train_max_fit_seconds: float = Field(default=1800.0, gt=0)
    train_time_limit_seconds: float = Field(default=3600.0, gt=0)
    # The APIs: a bound on records per request, and how often the champion alias is re-read.
    max_records: int = Field(default=10_000, ge=1)
    model_check_seconds: float = Field(default=10.0, ge=0)
    # Drift monitoring: the data set drifts when at least this share of its columns drift.
    drift_share_threshold: float = Field(default=0.5, gt=0, le=1)
    # Evidently's per-column test and threshold; None lets it choose by column type and size.
    drift_method: str | None = None
    drift_column_threshold: float | None = Field(default=None, gt=0)
    drift_sample_rows: int = Field(default=100_000, ge=100)
    reports_dir: Path = Path("reports")
    # Drift reports (a few MB of HTML each, also logged to MLflow) kept in reports_dir.
    reports_keep: int = Field(default=20, ge=1)
    monitor_max_records: int = Field(default=50_000, ge=1)
    # `bikecount pipeline` and the Airflow DAGs: the store of raw counts, predictions and audit
    # (any SQLAlchemy URL), and the RegModel API they call.
    pipeline_db_url: str = "sqlite:///pipeline.db"
    pipeline_api_url: str = "http://127.0.0.1:8000"
    # Ingest asks Paris Open Data first; when it cannot be reached, this source is read instead:
    # a file-drop folder, one export file, or 'synthetic'. Unset: the generator in dev, none in
    # prod (generated counts must never slip into a production store).
    pipeline_open_data: bool = True
    pipeline_source: str | None = None
    pipeline_model_type: RegressorType = "gbm"
    pipeline_recent_days: int = Field(default=14, ge=1)
    pipeline_batch_size: int = Field(default=5000, ge=1)
    # An ingest whose share of rejected rows is above this fails its run, so it is looked at.
    pipeline_max_rejected_share: float = Field(default=0.2, ge=0, le=1)
    # A re-ingest that would leave a stored day with fewer than this share of its rows is
    # refused unless forced: a partial export must not silently replace a complete day.
    pipeline_reingest_min_share: float = Field(default=0.8, ge=0, le=1)
    # Airflow task retries (an API restarting, Open Data late) and the pause between them.
    pipeline_retries: int = Field(default=2, ge=0)
    pipeline_retry_delay_seconds: float = Field(default=300.0, ge=0)
    # Retrain through the API's fast test-mode settings (demos and tests only).
    pipeline_test_mode: bool = False
    # Retrain when drift is detected and the champion's R² on recent data falls below this.
    retrain_r2_threshold: float = 0.6
    # Retrain, whatever the drift, when the champion's error share (1 - R²) on the recent days
    # is at least this many times its holdout's (model decay).
    retrain_decay_ratio: float = Field(default=1.5, gt=1)
    # Alerts (Alertmanager, `bikecount up --monitoring` and compose profile `monitoring`): where
    # they are delivered, one URL per kind of receiver (none: shown in Alertmanager's UI only),
    # and how Alertmanager groups them: the wait before the first message of a group, between
    # messages of a changing group, and before repeating an unchanged one.
    alert_webhook_url: SecretStr | None = None
    alert_slack_webhook_url: SecretStr | None = None
    alert_discord_webhook_url: SecretStr | None = None
    alert_group_wait_seconds: int = Field(default=30, ge=0)
    alert_group_interval_seconds: int = Field(default=300, ge=1)
    alert_repeat_interval_minutes: int = Field(default=240, ge=1)
    alertmanager_port: int = Field(default=9093, ge=1, le=65535)
    # `bikecount up --airflow`: Airflow's home (config, SQLite metadata, task logs) and UI port.
    airflow_home: Path = Path("airflow_home")
    airflow_port: int = Field(default=8081, ge=1, le=65535)
    # The dashboard (Streamlit, started by `bikecount up`): its port, how long a query's answer
    # is reused, and how many days a counter's history and the daily errors span.
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    dashboard_cache_seconds: float = Field(default=30.0, ge=0)
    dashboard_history_days: int = Field(default=7, ge=1, le=62)
    dashboard_errors_days: int = Field(default=60, ge=1, le=366)

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
