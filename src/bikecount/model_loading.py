"""A registered version downloaded and loaded whole, through the registry's own URIs.

The model is what ``train()`` logged with ``mlflow.sklearn``: a fitted
:class:`~bikecount.models.protocol.RecordModel`, which takes raw or canonical records.
"""

from __future__ import annotations

import tempfile

import mlflow

from bikecount.mlflow_setup import point_mlflow_at
from bikecount.models.protocol import RecordModel
from bikecount.registry_errors import asking


def download_model(tracking_uri: str, registered_name: str, version: int) -> RecordModel:
    """The fitted estimator of version ``version`` of ``registered_name``.

    Raises:
        RegistryUnavailableError: MLflow failed to answer, or the download failed.
    """
    uri = f"models:/{registered_name}/{version}"
    # MLflow 3 resolves a version's logged-model source with its *global* URIs, whatever
    # is passed: point them at this registry for the download, then put them back.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    point_mlflow_at(tracking_uri, tracking_uri)
    try:
        with tempfile.TemporaryDirectory(prefix="bikecount-model-") as folder:
            with asking(tracking_uri, f"download {uri}"):
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=folder,
                    tracking_uri=tracking_uri,
                    registry_uri=tracking_uri,
                )
            model: RecordModel = mlflow.sklearn.load_model(local)
            return model
    finally:
        point_mlflow_at(*previous)
