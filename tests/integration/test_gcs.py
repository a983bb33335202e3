"""env=prod against a real local GCS emulator: models go to the gs:// bucket and load from it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from servers import start_command

import helpers
from bikecount.config import Settings
from bikecount.data.prepare import write_datasets
from bikecount.inference import load_model
from bikecount.registry import Registry
from bikecount.train import TrainRequest, train

pytestmark = pytest.mark.integration

BUCKET = "bikecount-test"


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gcp-storage-emulator process on a free port, its address in STORAGE_EMULATOR_HOST."""
    root = tmp_path_factory.mktemp("gcs")
    port = helpers.free_port()
    command = [
        sys.executable, "-m", "gcp_storage_emulator", "start",
        "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", BUCKET,
    ]  # fmt: skip
    emulator = start_command("gcs-emulator", command, root, port, "/storage/v1/b")
    emulator.wait_healthy(30)
    url = emulator.url
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield url
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    emulator.stop()


@pytest.fixture(scope="module")
def prod_settings(tmp_path_factory: pytest.TempPathFactory, gcs_emulator: str) -> Settings:
    root = tmp_path_factory.mktemp("prod")
    settings = Settings(
        env="prod",
        gcs_bucket=BUCKET,
        api_key="prod-test-key",
        data_dir=root / "data",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifacts_dir=root / "artifacts",
    )
    raw = helpers.generate_raw(helpers.SMALL_CONFIG)
    write_datasets(raw, settings, sample_size=400)
    return settings


def bucket_objects() -> list[str]:
    from google.cloud import storage

    return [blob.name for blob in storage.Client().list_blobs(BUCKET)]


def test_prod_training_writes_the_model_to_the_bucket_and_serves_it_back(
    prod_settings: Settings,
) -> None:
    registry = Registry(prod_settings)
    result = train(
        TrainRequest(model_type="gbm", data_source="reference", env="prod", test_mode=True),
        prod_settings,
        registry,
    )

    objects = bucket_objects()
    assert any(name.endswith("/model.pkl") for name in objects), objects
    assert any(name.endswith("/MLmodel") for name in objects), objects
    assert not (prod_settings.artifacts_dir).exists()  # nothing written to local artifacts

    model, version = load_model(registry, "gbm")
    records = pd.read_csv(prod_settings.dataset_path("current"), sep=";", dtype=str).head(20)
    predictions = model.predict(records)
    assert version == result.version
    assert len(predictions) == 20 and (predictions >= 0).all()


def test_prod_settings_refuse_a_missing_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BIKECOUNT_GCS_BUCKET"):
        Settings(env="prod", gcs_bucket=None, api_key="k", data_dir=tmp_path)
