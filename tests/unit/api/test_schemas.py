"""The APIs' contract without a server: schemas, request checks, error mapping.

The error handlers are exercised on an app of the test's own (no MLflow, no model files), so that
their rules (4xx for what the caller can fix, no trace in a 500) are checked in milliseconds; the
integration tests run the same paths for real.
"""

from __future__ import annotations

import math
import typing
import warnings
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from bikecount.api.errors import (
    InvalidFieldError,
    install_error_handling,
    json_safe,
    record_error_detail,
    redact,
)
from bikecount.api.jobs import path_inside_data_dir
from bikecount.api.records_body import records_frame
from bikecount.api.routes.monitor import MonitorRequestBody
from bikecount.api.schemas import (
    EXAMPLE_API_RECORD,
    EXAMPLE_RECORD,
    Metric,
    ModelType,
    PredictRequest,
    TrainRequestBody,
)
from bikecount.config import Settings
from bikecount.evaluate import HIGHER_IS_BETTER, finite_metrics
from bikecount.models import MODEL_TYPES
from bikecount.records import (
    COORDINATES,
    COUNTER,
    TIMESTAMP,
    RecordError,
    RecordIssue,
    require_valid,
)
from bikecount.registry import ModelNotFoundError


def test_literals_match_the_catalogue() -> None:
    assert typing.get_args(ModelType) == MODEL_TYPES
    assert set(typing.get_args(Metric)) == set(HIGHER_IS_BETTER)


def test_predict_request_defaults_and_examples() -> None:
    request = PredictRequest(records=[EXAMPLE_RECORD])
    assert request.model_type == "rf" and request.metric is None
    for example in PredictRequest.model_json_schema()["examples"]:
        PredictRequest.model_validate(example)
    for example in TrainRequestBody.model_json_schema()["examples"]:
        TrainRequestBody.model_validate(example)


@pytest.mark.parametrize(
    "body",
    [
        {"records": []},
        {"records": [{"a": [1, 2]}]},
        {"records": [EXAMPLE_RECORD], "model_type": "svm"},
        {"records": [EXAMPLE_RECORD], "metric": "auc"},
        {"records": [EXAMPLE_RECORD], "version": 3},
    ],
)
def test_predict_request_refuses(body: dict) -> None:
    with pytest.raises(ValidationError):
        PredictRequest.model_validate(body)


def test_predict_request_takes_the_api_coordinates_object() -> None:
    # The Explore API's /records answers "coordinates": {"lon": .., "lat": ..}; the schema lets
    # an object through, and the record contract says which fields may be one.
    request = PredictRequest.model_validate({"records": [EXAMPLE_API_RECORD]})
    assert request.records[0]["coordinates"] == {"lon": 2.336515, "lat": 48.839328}


def test_train_body_defaults_follow_the_seed() -> None:
    body = TrainRequestBody(model_type="rf")
    assert (body.data_source, body.env, body.test_mode, body.wait) == (
        "reference",
        None,
        False,
        True,
    )
    assert body.hyperparams == {}
    with pytest.raises(ValidationError, match="control characters"):
        TrainRequestBody(model_type="rf", data_source="a\x00b.csv")


@pytest.mark.parametrize("field", ["reference", "current"])
def test_monitor_data_sets_refuse_control_characters_by_field(field: str) -> None:
    """The same rule as /train's data_source, and the error names the field."""
    with pytest.raises(ValidationError, match="control characters") as caught:
        MonitorRequestBody.model_validate({field: "ref\x07.csv"})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_records_of_one_request_may_use_either_spelling() -> None:
    snake = {
        "nom_du_compteur": "A",
        "date_et_heure_de_comptage": "2021-06-01T08:00:00+02:00",
        "coordonnées_géographiques": "48.85,2.35",
    }
    frame = records_frame([EXAMPLE_RECORD, snake])
    assert list(frame.columns) == [COUNTER, TIMESTAMP, COORDINATES]
    assert frame[COUNTER].tolist() == [EXAMPLE_RECORD[COUNTER], "A"]


def test_a_record_with_both_spellings_of_a_column_is_refused() -> None:
    with pytest.raises(RecordError) as caught:
        records_frame([EXAMPLE_RECORD, {**EXAMPLE_RECORD, "nom_compteur": "B"}])
    assert [(issue.row, issue.column) for issue in caught.value.issues] == [(1, COUNTER)]
    assert f"'{COUNTER}' and 'nom_compteur'" in str(caught.value)


def test_records_in_the_api_field_names_give_the_same_frame() -> None:
    # As /records answers: coordinates an object, sum_counts a number.
    api = {**EXAMPLE_API_RECORD, "sum_counts": 12, "id_compteur": "100036719-104036719"}
    labels = {
        COUNTER: api["nom_compteur"],
        TIMESTAMP: api["date"],
        COORDINATES: "48.839328,2.336515",
        "Comptage horaire": 12,
    }

    from_api = require_valid(records_frame([api]), require_count=True)

    pd.testing.assert_frame_equal(from_api, require_valid(records_frame([labels])))
    assert from_api["count"].tolist() == [12.0]


@pytest.mark.parametrize(
    ("column", "value"),
    [("extra", 10**400), ("Comptage horaire", 2**64), (COUNTER, -(10**300)), (COUNTER, 2**63)],
)
def test_an_integer_beyond_64_bits_is_a_record_error(column: str, value: int) -> None:
    with pytest.raises(RecordError) as caught:
        records_frame([EXAMPLE_RECORD, {**EXAMPLE_RECORD, column: value}])
    [issue] = caught.value.issues
    assert (issue.row, issue.column) == (1, column) and "64 bits" in issue.expected
    assert len(str(issue.value)) < 50  # shortened, not echoed in full


def test_integers_within_64_bits_and_bools_are_kept() -> None:
    frame = records_frame([{**EXAMPLE_RECORD, "extra": 2**63 - 1, "flag": True}])
    assert frame["extra"].tolist() == [2**63 - 1] and frame["flag"].tolist() == [True]


def test_record_errors_name_row_column_and_expectation() -> None:
    issues = [RecordIssue(2, TIMESTAMP, float("nan"), "a date")] * 60
    detail = record_error_detail(RecordError(issues))
    assert detail[0]["loc"] == ["body", "records", 2, TIMESTAMP]
    assert detail[0]["msg"] == "expected a date" and detail[0]["input"] == "nan"
    assert len(detail) == 51 and "10 more" in detail[-1]["msg"]


def test_secrets_and_non_finite_numbers_never_reach_a_body() -> None:
    assert redact("http://user:s3cret@mlflow:5000/api") == "http://***@mlflow:5000/api"
    assert json_safe({"a": [float("inf"), 1.5]}) == {"a": ["inf", 1.5]}
    assert finite_metrics({"r2": math.nan, "rmse": 3.0}) == {"r2": None, "rmse": 3.0}


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("reference_data.csv", True),
        ("sub/file.parquet", True),
        ("../outside.csv", False),
        ("../../etc/passwd", False),
        ("/etc/passwd", False),
        ("sub/../../outside.csv", False),
        ("notes.txt", False),
    ],
)
def test_data_source_paths_stay_in_the_data_folder(
    tmp_path: Path, source: str, allowed: bool
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    if allowed:
        assert path_inside_data_dir(source, settings).is_relative_to(tmp_path / "data")
    else:
        with pytest.raises(InvalidFieldError):
            path_inside_data_dir(source, settings)


def test_a_symlink_out_of_the_data_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "secret.csv").write_text("x")
    (tmp_path / "data" / "link.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(InvalidFieldError):
        path_inside_data_dir("link.csv", Settings(_env_file=None, data_dir=tmp_path / "data"))


def test_prod_settings_need_an_api_key() -> None:
    with pytest.raises(ValidationError, match="BIKECOUNT_API_KEY"):
        Settings(_env_file=None, env="prod", gcs_bucket="bucket")
    assert Settings(_env_file=None, env="prod", gcs_bucket="bucket", api_key="k").api_key


def test_unexpected_errors_are_a_500_without_the_trace() -> None:
    app = FastAPI()
    install_error_handling(app, max_records=10)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/missing")
    def missing() -> None:
        raise ModelNotFoundError("bikecount-rf has no champion yet")

    with warnings.catch_warnings():  # Starlette would rather have httpx2: not installed here
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/boom")
    assert response.status_code == 500
    assert "internal error" in response.json()["detail"] and "secret" not in response.text
    assert client.get("/missing").status_code == 404
