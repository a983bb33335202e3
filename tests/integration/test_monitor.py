"""Drift monitoring end to end: ``bikecount monitor --json`` on a local store, ``POST /monitor``
through a real uvicorn and a real MLflow server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from servers import REGMODEL_APP, Tracking, api_env, running, start_api, write_test_data
from typer.testing import CliRunner

from bikecount.cli import app
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.records import SNAKE_TO_EXPORT
from bikecount.registry import Registry
from bikecount.train import TrainRequest, train

pytestmark = pytest.mark.integration

API_KEY = "monitor-key-3c9a"
MAX_RECORDS = 60
REPORTS_KEEP = 2
SNAKE = {export: snake for snake, export in SNAKE_TO_EXPORT.items()}
SUMMARY_FIELDS = {
    "drift_detected", "drift_share", "drifted_columns", "column_scores", "n_reference",
    "n_current", "target_drift", "report_path", "champion", "run_id",
}  # fmt: skip


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Data sets and a SQLite tracking store in a temporary folder, as the CLI's settings."""
    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_URI", "BIKECOUNT_API_KEY", "BIKECOUNT_ENV"):
        monkeypatch.delenv(key, raising=False)
    values = {
        "DATA_DIR": tmp_path / "data",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "ARTIFACTS_DIR": tmp_path / "artifacts",
        "REPORTS_DIR": tmp_path / "reports",
    }
    for key, value in values.items():
        monkeypatch.setenv(f"BIKECOUNT_{key}", str(value))
    write_test_data(tmp_path / "data")
    return Settings(_env_file=None)


def test_cli_monitor_json_logs_a_run(local_store: Settings) -> None:
    request = TrainRequest(model_type="gbm", data_source="reference", env="dev", test_mode=True)
    trained = train(request, local_store, Registry(local_store))
    result = CliRunner().invoke(app, ["monitor", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert SUMMARY_FIELDS <= set(summary)
    assert 0 <= summary["drift_share"] <= 1 and summary["n_current"] > 1000
    assert Path(summary["report_path"]).is_file()
    champion = summary["champion"]
    assert champion["version"] == trained.version and champion["rows"] == summary["n_current"]
    assert {"r2", "rmse"} <= set(champion["metrics_current"]) <= set(champion["metrics_holdout"])

    client = MlflowClient(local_store.tracking_uri, local_store.tracking_uri)
    run = client.get_run(summary["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "bikecount-monitoring"
    metrics = run.data.metrics
    assert metrics["drift_share"] == pytest.approx(summary["drift_share"])
    assert metrics["drift_detected"] == float(summary["drift_detected"])
    assert metrics["n_drifted_columns"] == len(summary["drifted_columns"])
    assert {"drift_score_hour", "drift_score_count", "champion_r2_current"} <= set(metrics)
    assert run.data.tags["reference"].endswith("reference_data.csv")
    assert len(run.data.tags["current_fingerprint"]) == 16
    reports = [a.path for a in client.list_artifacts(run.info.run_id, "drift_report")]
    assert reports == [f"drift_report/{Path(summary['report_path']).name}"]


def test_cli_missing_file_says_how_to_make_it(local_store: Settings) -> None:
    result = CliRunner().invoke(app, ["monitor", "--current", "nowhere.csv"])
    assert result.exit_code == 1
    assert "nowhere.csv" in result.output and "bikecount data prepare" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The API's working folder: data sets, a file outside them, and its reports."""
    root = tmp_path_factory.mktemp("monitor_api")
    write_test_data(root / "data")
    (root / "outside.csv").write_text("not inside the data folder\n")
    return root


@pytest.fixture(scope="module")
def api(root: Path, tracking: Tracking) -> Iterator[httpx.Client]:
    """A RegModel API (with an API key) on a real MLflow server; no champion is trained."""
    env = api_env(
        root,
        tracking,
        api_key=API_KEY,
        monitor_max_records=MAX_RECORDS,
        reports_keep=REPORTS_KEEP,
    )
    regmodel = start_api("regmodel", REGMODEL_APP, root, env)
    headers = {"X-API-Key": API_KEY}
    with running(regmodel):
        with httpx.Client(base_url=regmodel.url, timeout=180, headers=headers) as client:
            yield client
    assert "Traceback" not in regmodel.log(), regmodel.log()
    assert API_KEY not in regmodel.log()


def test_post_monitor_on_data_sets(api: httpx.Client, tracking: Tracking) -> None:
    response = api.post("/monitor", json={"reference": "reference", "current": "current"})
    assert response.status_code == 200, response.text
    summary = response.json()
    assert SUMMARY_FIELDS <= set(summary) and summary["experiment"] == tracking.name("monitoring")
    assert summary["column_scores"]["hour"]["method"]
    assert summary["champion"]["metrics_current"] is None
    assert "no champion" in summary["champion"]["reason"]
    assert summary["report_path"].endswith(".html") and len(summary["run_id"]) == 32
    exposed = httpx.get(f"{api.base_url}/metrics").text
    assert f"bikecount_drift_share {float(summary['drift_share'])}" in exposed


def test_post_monitor_on_records_in_the_body(api: httpx.Client, current_records: list) -> None:
    response = api.post("/monitor", json={"records": current_records[:MAX_RECORDS]})
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["n_current"] == MAX_RECORDS
    assert summary["sources"]["current"].startswith("request body")


@pytest.fixture(scope="module")
def current_records(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> list:
    """Current records in the export spelling, as a client would send them."""
    frame = read_records(
        write_test_data(tmp_path_factory.mktemp("records")).dataset_path("current")
    )
    return frame.head(MAX_RECORDS + 1).fillna("").to_dict(orient="records")


def test_post_monitor_needs_the_key(api: httpx.Client) -> None:
    response = httpx.post(f"{api.base_url}/monitor", json={})
    assert response.status_code == 401
    wrong = httpx.post(f"{api.base_url}/monitor", json={}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reference": "../outside.csv"}, "reference"),
        ({"reference": "/etc/passwd"}, "reference"),
        ({"current": "../outside.csv"}, "current"),
        ({"current": "missing.csv"}, "current"),
    ],
)
def test_post_monitor_refuses_paths_outside_the_data(
    api: httpx.Client, body: dict, field: str
) -> None:
    response = api.post("/monitor", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_post_monitor_bad_bodies_are_4xx(api: httpx.Client, current_records: list) -> None:
    too_many = api.post("/monitor", json={"records": current_records[: MAX_RECORDS + 1]})
    assert too_many.status_code == 413
    assert f"at most {MAX_RECORDS}" in too_many.json()["detail"]
    both = api.post("/monitor", json={"current": "current", "records": current_records[:2]})
    assert both.status_code == 422
    bad = [{**current_records[0], "Coordonnées géographiques": "somewhere"}]
    invalid = api.post("/monitor", json={"records": bad})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["column"] == "Coordonnées géographiques"
    assert api.post("/monitor", json={"model_type": "svm"}).status_code == 422


def test_post_monitor_keeps_only_the_newest_reports(
    api: httpx.Client, root: Path, current_records: list
) -> None:
    paths = []
    for _ in range(REPORTS_KEEP + 1):
        response = api.post("/monitor", json={"records": current_records[:30]})
        assert response.status_code == 200, response.text
        paths.append(Path(response.json()["report_path"]))
    kept = sorted(path.name for path in (root / "reports").glob("drift_*.html"))
    assert kept == sorted(path.name for path in paths[-REPORTS_KEEP:])


def test_post_monitor_reads_records_as_predict_does(
    api: httpx.Client, current_records: list
) -> None:
    export = current_records[:20]
    snake = [{SNAKE.get(key, key): value for key, value in record.items()} for record in export]
    mixed = export[:10] + snake[10:]
    response = api.post("/monitor", json={"records": mixed})
    assert response.status_code == 200, response.text
    assert response.json()["n_current"] == 20


def test_post_monitor_names_current_for_a_bad_current_file(api: httpx.Client, root: Path) -> None:
    frame = read_records(root / "data" / "current_data.csv").head(50)
    write_records(frame.drop(columns=["Coordonnées géographiques"]), root / "data" / "no_xy.csv")
    response = api.post("/monitor", json={"current": "no_xy.csv"})
    assert response.status_code == 422, response.text
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "current"] and "Coordonnées géographiques" in item["msg"]
