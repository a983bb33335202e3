"""bikecount against a local stand-in of the Paris Open Data Explore API that answers in the real
formats (see ``opendata_server``): field-name CSV headers unless ``use_labels=true``, JSON pages of
``/records`` with ``total_count``, ``date`` with its offset, ``coordinates`` as an object.

The rows are real: 2 counters x 24 hours of 2021-06-01 (``tests/fixtures/opendata``, from the
City of Paris's "comptage-velo-donnees-compteurs", ODbL).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pytest
from opendata_server import (
    EXPORT_PATH,
    REAL_EXPORT,
    REAL_RECORDS_PAGE,
    RECORDS_PATH,
    real_export,
    serving,
)
from typer.testing import CliRunner

import helpers
from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.opendata import read_day_records, records_url
from bikecount.pipeline.store import read_counts
from bikecount.pipeline.store_engine import open_store
from bikecount.records import EXPORT_COLUMNS, parse_records, to_export_columns

pytestmark = pytest.mark.integration

DAY = date(2021, 6, 1)
ROWS_OF_DAY = 48


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A working folder for the CLI, its settings in the environment as a user's would be."""
    settings = helpers.local_settings(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("data_dir", "mlruns_dir", "artifacts_dir", "logs_dir", "reports_dir"):
        monkeypatch.setenv(f"BIKECOUNT_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("BIKECOUNT_PIPELINE_DB_URL", settings.pipeline_db_url)
    # A URI an earlier test left in the environment would win over this folder's store.
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    return settings


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_stand_in_answers_as_the_real_api() -> None:
    with serving(real_export()) as api:
        by_default = httpx.get(api.base + EXPORT_PATH, params={"timezone": "Europe/Paris"})
        labelled = httpx.get(api.base + EXPORT_PATH, params={"use_labels": "true"})
        page = httpx.get(
            api.base + RECORDS_PATH,
            params={"limit": 2, "order_by": "date", "timezone": "Europe/Paris"},
        )
        too_big = httpx.get(api.base + RECORDS_PATH, params={"limit": 101})

    assert by_default.text == REAL_EXPORT.read_text(encoding="utf-8")
    assert labelled.text.splitlines()[0] == ";".join(EXPORT_COLUMNS)
    # Without a timezone the API writes UTC offsets.
    assert "2021-05-31T22:00:00+00:00" in labelled.text
    expected = json.loads(REAL_RECORDS_PAGE.read_text(encoding="utf-8"))
    # Except the month field, whose format the page keeps as the API's ("2021-06").
    served = [{**row, "mois_annee_comptage": "2021-06"} for row in page.json()["results"]]
    assert page.json()["total_count"] == expected["total_count"] == ROWS_OF_DAY
    assert served == expected["results"]
    assert too_big.status_code == 400


def test_every_spelling_parses_to_the_same_records() -> None:
    labels = parse_records(real_export(), require_count=True).frame
    fields = parse_records(pd.read_csv(REAL_EXPORT, sep=";", dtype=str), require_count=True)
    page = json.loads(REAL_RECORDS_PAGE.read_text(encoding="utf-8"))["results"]
    from_json = parse_records(pd.DataFrame.from_records(page), require_count=True)

    assert len(labels) == ROWS_OF_DAY and not fields.issues and not from_json.issues
    pd.testing.assert_frame_equal(fields.frame, labels)
    pd.testing.assert_frame_equal(from_json.frame, labels.iloc[:2])


def test_ingest_from_open_data_stores_every_row_of_the_day(home: Settings) -> None:
    with serving(real_export()) as api:
        output = invoke_ingest(api.url, "opendata")
        asked = [request for request in api.requests if request["path"] == [EXPORT_PATH]]

    assert json.loads(output)["rows_written"] == ROWS_OF_DAY
    assert len(read_counts(open_store(home.pipeline_db_url), DAY, DAY)) == ROWS_OF_DAY
    assert len(asked) == 1 and asked[0]["timezone"] == ["Europe/Paris"]


def test_ingest_reads_the_records_endpoint_when_the_export_fails(home: Settings) -> None:
    with serving(real_export(), fail_exports=True) as api:
        report = json.loads(invoke_ingest(api.url, "opendata"))
        pages = [request for request in api.requests if request["path"] == [RECORDS_PATH]]

    assert report["rows_written"] == ROWS_OF_DAY and "/records" in report["note"]
    assert [page["offset"] for page in pages] == [["0"]]
    assert all(page["limit"] == ["100"] for page in pages)
    assert len(read_counts(open_store(home.pipeline_db_url), DAY, DAY)) == ROWS_OF_DAY


def test_records_are_paged_by_one_hundred() -> None:
    rows = to_export_columns(helpers.generate_raw(helpers.SMALL_CONFIG))
    with serving(rows) as api:
        read = read_day_records(records_url(api.url), date(2021, 3, 28))
        offsets = [request["offset"] for request in api.requests]

    # The spring daylight-saving day has 23 hours, for 6 counters.
    assert len(read) == 23 * 6 and read["sum_counts"].map(type).eq(int).all()
    assert offsets == [["0"], ["100"]]
    assert (
        parse_records(read, require_count=True)
        .frame["timestamp"]
        .dt.date.eq(date(2021, 3, 28))
        .all()
    )


def test_a_dropped_export_file_in_field_names_is_ingested(home: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.csv").write_bytes(REAL_EXPORT.read_bytes())

    report = json.loads(invoke_ingest("http://127.0.0.1:9/unused", str(drop)))

    assert report["rows_written"] == ROWS_OF_DAY and report["rows_rejected"] == 0


def test_fetch_then_train_on_the_fetched_file(home: Settings) -> None:
    # Two months of six counters, served as the API writes them (field names).
    with serving(helpers.generate_raw(helpers.SMALL_CONFIG)) as api:
        fetched = home.data_dir / "raw.csv"
        invoke("data", "fetch", "--url", api.url, "--output", str(fetched))

    assert fetched.read_text(encoding="utf-8").startswith("id_compteur;nom_compteur;")
    output = invoke("train", "--model", "rf", "--data", str(fetched), "--test-mode", "--json")
    result = json.loads(output)
    assert result["version"] == 1 and result["rows_dropped"] == 0
    assert result["rows_fit"] == len(read_records(fetched))  # every fetched row


def invoke_ingest(url: str, source: str) -> str:
    result = CliRunner().invoke(
        app,
        ["pipeline", "ingest", "--date", DAY.isoformat(), "--source", source, "--json"],
        env={"BIKECOUNT_OPEN_DATA_URL": url},
    )
    assert result.exit_code == 0, result.output
    return result.output
