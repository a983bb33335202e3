"""One validation path: train()'s checks, which POST /train runs before it accepts a job, and
monitoring's inputs, on files or frames."""

from __future__ import annotations

from pathlib import Path

import pytest

import helpers
from bikecount.api.errors import InvalidFieldError
from bikecount.api.jobs import build_train_request
from bikecount.api.schemas import TrainRequestBody
from bikecount.config import Settings
from bikecount.data.io import DataFileError, write_records
from bikecount.models import HyperparameterError
from bikecount.monitoring.inputs import MonitoringDataError, monitoring_input
from bikecount.monitoring.run import run_monitoring
from bikecount.records import parse_records
from bikecount.registry import Registry
from bikecount.train import EnvUnavailableError, TrainRequest, validate_train_request


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    write_records(helpers.raw_records([{}]), settings.dataset_path("reference"))
    return settings


def test_a_valid_request_gives_its_spec_params_and_file(settings: Settings) -> None:
    request = TrainRequest(model_type="rf", hyperparams={"n_estimators": "7"})
    spec, params, path = validate_train_request(request, settings)
    assert (spec.name, params.n_estimators, path) == (
        "rf",
        7,
        settings.dataset_path("reference"),
    )


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (TrainRequest(model_type="rf", hyperparams={"bogus": 1}), HyperparameterError),
        (TrainRequest(model_type="rf", env="prod"), EnvUnavailableError),
        (TrainRequest(model_type="rf", data_source="current"), DataFileError),
    ],
)
def test_each_bad_part_is_its_own_error(
    settings: Settings, request_: TrainRequest, error: type[Exception]
) -> None:
    with pytest.raises(error):
        validate_train_request(request_, settings)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hyperparams": {"bogus": 1}}, "hyperparams"),
        ({"env": "prod"}, "env"),
        ({"data_source": "current"}, "data_source"),
        ({"data_source": "../outside.csv"}, "data_source"),
    ],
)
def test_the_api_names_the_field_of_trains_own_checks(
    settings: Settings, body: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        body_model = TrainRequestBody.model_validate({"model_type": "rf", **body})
        build_train_request(body_model, settings, Registry(settings))
    assert caught.value.field == field


def test_monitoring_names_the_side_that_cannot_be_read(settings: Settings) -> None:
    records = parse_records(helpers.raw_records([{}, {}, {}])).frame
    frame, sources = monitoring_input("current", records)
    assert len(frame) == 3 and sources == {"current": "request body (3 records)"}
    reference = settings.dataset_path("reference")
    _, sources = monitoring_input("reference", reference)
    assert sources["reference"] == str(reference) and sources["reference_fingerprint"]
    with pytest.raises(MonitoringDataError) as caught:
        run_monitoring(settings, Registry(settings), reference, settings.dataset_path("current"))
    assert caught.value.side == "current" and "no such file" in str(caught.value)
