"""A training run that fails: what it half wrote to the artifact store removed, and, when the
machine failed it (a full, read-only or forbidden disk), the reason on the run.

MLflow marks such a run FAILED and the model it was logging FAILED, but leaves the model's
files, as far as they were copied, on the disk that may have no room left; nothing registered
them (MLflow registers a version only once its files are all written), so nothing needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from bikecount.faults import as_machine_fault

logger = logging.getLogger(__name__)

FAILED_TAG = "failed_because"


@contextmanager
def cleaning_failed_run(
    doing: str = "logging the model", setting: str = "BIKECOUNT_ARTIFACTS_DIR"
) -> Iterator[None]:
    """Inside ``mlflow.start_run()``: on an error, remove the files of the run's models that
    were not finished, and tag a machine fault's message on the run (``failed_because``).

    A raw ``OSError`` of a full, read-only or forbidden disk leaves as its
    :class:`~bikecount.faults.StorageError`, naming the path and what was being done
    (``doing``), its hint naming ``setting``, so that every caller says it the same way.
    MLflow then ends the run FAILED.
    """
    try:
        yield
    except Exception as exc:
        run = mlflow.active_run()
        if run is None:
            raise
        removed = remove_unfinished_models(MlflowClient(), run.info.experiment_id, run.info.run_id)
        outcome = "run FAILED, its partial files removed" if removed else "run FAILED"
        fault = as_machine_fault(exc, f"{doing} ({outcome})", setting)
        if fault is None:
            raise
        try:
            mlflow.set_tag(FAILED_TAG, fault.message[:5000])
        except Exception as tag_error:  # the tracking store may be on the full disk too
            logger.warning("could not tag run %s: %s", run.info.run_id, tag_error)
        # The caller says the fault; the log keeps the run and what was removed.
        logger.info("run %s failed: %s; removed: %s", run.info.run_id, fault.message, removed)
        if fault is exc:
            raise
        raise fault from exc


def remove_unfinished_models(client: MlflowClient, experiment_id: str, run_id: str) -> list[str]:
    """Delete the artifacts of the models ``run_id`` logged that are not READY; return the
    locations removed. A failure to remove one is logged, not raised: the run's own error is
    what the caller must see."""
    try:
        models = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
    except Exception as exc:  # MLflow down: the run's own error is the one to report
        logger.warning("could not list the models of run %s: %s", run_id, exc)
        return []
    removed = []
    for model in models:
        if model.status == LoggedModelStatus.READY:
            continue
        try:
            delete_model_artifacts(model)
        except Exception as exc:
            logger.warning("could not remove %s: %s", model.artifact_location, exc)
            continue
        removed.append(model.artifact_location)
        logger.info("removed the unfinished model %s", model.artifact_location)
    return removed


def delete_model_artifacts(model: LoggedModel) -> None:
    """Delete a logged model's files; on a local disk its folder (``models/<id>``) too."""
    location = model.artifact_location
    get_artifact_repository(location).delete_artifacts()
    if location.startswith("file:") or "://" not in location:
        folder = Path(local_file_uri_to_path(location)).parent
        if folder.name == model.model_id:
            with suppress(OSError):  # not empty: something else lives there, keep it
                folder.rmdir()
