"""A real Prometheus scraping a real RegModel API: the metrics arrive, and every PromQL
expression of the Grafana dashboards and of the alert rules parses and finds data.

MLflow, the API and Prometheus (Debian's ``prometheus`` package; ``make system-deps``) run as
processes on free ports; Prometheus scrapes every second into a temporary TSDB. The traffic:
a test-mode rf training, predictions of several batch sizes, 422s (invalid records), a drift run
(``POST /monitor``) on records with a shift, and 503s (MLflow stopped, a model never loaded).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from servers import (
    REGMODEL_APP,
    ServerProcess,
    api_env,
    running,
    start_api,
    start_command,
    start_mlflow,
    write_test_data,
)

import helpers
from bikecount.data.io import read_records
from helpers import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="no prometheus: apt-get install prometheus (make system-deps)",
    ),
]

ALERTS_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
TRAIN = {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True}
BATCH_SIZES = (1, 1, 5, 5, 20, 50)
INVALID_REQUESTS = 3
# 503s: one, then (after Prometheus saw it) more: rate() ignores a series' first value.
UNAVAILABLE_REQUESTS = (1, 4)
# Grafana's variables, as Grafana would expand them for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
# An alert's threshold comparison at the end of its expression: `... > 0.05`, `... == 0`.
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[-+0-9.e]+\s*$")
# Alerts a healthy stack does not fire: their full expression parses, the quantity before the
# threshold must have data. The others fire in this test (5xx share, drift) and are checked whole.
UNAVAILABLE = 'sum(bikecount_http_requests_total{status="503"})'
QUIET_ALERTS = {"BikecountApiDown", "BikecountHighLatencyP99", "BikecountChampionR2Low"}


@dataclass
class Monitored:
    mlflow: ServerProcess
    api: ServerProcess
    prometheus: ServerProcess
    current: pd.DataFrame


def prometheus_config(target: str, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "regmodel", "static_configs": [{"targets": [target]}]}],
    }


def start_prometheus(root: Path, api: ServerProcess) -> ServerProcess:
    root.mkdir(parents=True)
    shutil.copy(ALERTS_FILE, root / "alerts.yml")
    config = prometheus_config(api.url.removeprefix("http://"), root / "alerts.yml")
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = helpers.free_port()
    command = [
        "prometheus",
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return start_command("prometheus", command, root, port, "/-/ready")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("prometheus_stack")
    settings = write_test_data(root / "data")
    mlflow = start_mlflow(root / "mlflow")
    api = start_api("regmodel", REGMODEL_APP, root, api_env(root, mlflow.url))
    prometheus = start_prometheus(root / "prometheus", api)
    current = read_records(settings.dataset_path("current")).fillna("")
    with running(mlflow, api, prometheus):
        yield Monitored(mlflow, api, prometheus, current)


def query(prometheus: ServerProcess, expr: str) -> dict[str, Any]:
    """Prometheus' instant query API: the whole answer (status, and data or error)."""
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
    return response.json()


def values(prometheus: ServerProcess, expr: str) -> list[float]:
    answer = query(prometheus, expr)
    assert answer["status"] == "success", (expr, answer)
    return [float(sample["value"][1]) for sample in answer["data"]["result"]]


def wait_for_value(
    prometheus: ServerProcess, expr: str, expected: float, timeout: float = 30
) -> None:
    """Wait until ``expr`` has exactly one sample equal to ``expected`` (scrapes every 1 s)."""
    seen: list[list[float]] = []

    def scraped() -> bool:
        seen.append(values(prometheus, expr))
        return seen[-1] == [pytest.approx(expected)]

    helpers.wait_until(scraped, timeout, f"{expr} at [{expected}]", lambda: f"seen {seen[-1]}")


def last_scrape(prometheus: ServerProcess) -> float:
    """When Prometheus last scraped the API (the timestamp of its ``up`` sample)."""
    [seconds] = values(prometheus, 'timestamp(up{job="regmodel"})')
    return seconds


def send_traffic(client: httpx.Client, stack: Monitored) -> dict[str, Any]:
    """Train, predict, fail, monitor and (MLflow stopped) fail with 503; return what happened."""
    trained = client.post("/train", json=TRAIN)
    assert trained.status_code == 200, trained.text
    records = json.loads(stack.current.to_json(orient="records"))
    for size in BATCH_SIZES:
        answer = client.post("/predict", json={"records": records[:size], "model_type": "rf"})
        assert answer.status_code == 200, answer.text
    bad = [{**records[0], "Date et heure de comptage": "not a date"}]
    for _ in range(INVALID_REQUESTS):
        assert client.post("/predict", json={"records": bad}).status_code == 422
    drift = client.post(
        "/monitor", json={"records": helpers.shifted_records(stack.current), "model_type": "rf"}
    )
    assert drift.status_code == 200, drift.text
    stack.mlflow.stop()  # nn was never loaded: with MLflow gone, the API cannot serve it
    sent = 0
    for count in UNAVAILABLE_REQUESTS:
        for _ in range(count):
            answer = client.post("/predict", json={"records": records[:1], "model_type": "nn"})
            assert answer.status_code == 503, answer.text
        sent += count
        wait_for_value(stack.prometheus, UNAVAILABLE, sent)
    return {"trained": trained.json(), "drift": drift.json()}


@pytest.fixture(scope="module")
def traffic(stack: Monitored) -> dict[str, Any]:
    with httpx.Client(base_url=stack.api.url, timeout=180) as client:
        sent = send_traffic(client, stack)
    # rate() needs two samples of the last values: a scrape has them (send_traffic saw its 503s),
    # wait for one more.
    scraped = last_scrape(stack.prometheus)
    helpers.wait_until(lambda: last_scrape(stack.prometheus) > scraped, 30, "one more scrape")
    return sent


def test_request_counts_and_latency_histogram(stack: Monitored, traffic: dict) -> None:
    prometheus = stack.prometheus
    predict = 'route="/predict", method="POST"'
    ok = f'{{{predict}, status="200"}}'
    assert values(prometheus, f"bikecount_http_requests_total{ok}") == [len(BATCH_SIZES)]
    invalid = f'bikecount_http_requests_total{{{predict}, status="422"}}'
    assert values(prometheus, invalid) == [INVALID_REQUESTS]
    latency = "bikecount_http_request_duration_seconds"
    assert values(prometheus, f"{latency}_count{ok}") == [len(BATCH_SIZES)]
    assert values(prometheus, f'{latency}_bucket{{{predict}, status="200", le="+Inf"}}') == [
        len(BATCH_SIZES)
    ]
    assert values(prometheus, f"{latency}_sum{ok}")[0] > 0
    assert values(prometheus, 'count(bikecount_http_requests_total{route="/train/{job_id}"})') == []
    assert values(prometheus, "bikecount_predictions_total") == [sum(BATCH_SIZES)]
    assert values(prometheus, "bikecount_prediction_batch_size_count") == [len(BATCH_SIZES)]


def test_champion_and_training_gauges(stack: Monitored, traffic: dict) -> None:
    trained = traffic["trained"]
    prometheus = stack.prometheus
    version = values(prometheus, 'bikecount_champion_version{model_type="rf"}')
    assert version == [trained["model_version"]]
    r2 = values(prometheus, 'bikecount_champion_metric{model_type="rf", metric="r2"}')
    assert r2 == [pytest.approx(trained["metrics"]["r2"])]
    runs = 'bikecount_training_runs_total{model_type="rf", status=~"started|succeeded"}'
    assert values(prometheus, runs) == [1, 1]
    assert values(prometheus, "bikecount_training_duration_seconds_count") == [1]


def test_drift_gauges(stack: Monitored, traffic: dict) -> None:
    drift = traffic["drift"]
    assert drift["drift_detected"], drift  # the shift is large enough to be called drift
    prometheus = stack.prometheus
    assert values(prometheus, "bikecount_drift_detected") == [1]
    assert values(prometheus, "bikecount_drift_share") == [pytest.approx(drift["drift_share"])]
    drifted = query(prometheus, "bikecount_drift_column_detected == 1")["data"]["result"]
    assert {sample["metric"]["column"] for sample in drifted} == set(drift["drifted_columns"])


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries.append((f"{path.stem}: {panel['title']}", expr))
    return queries


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_every_dashboard_query_parses_and_has_data(stack: Monitored, traffic: dict) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    empty = [(title, expr) for title, expr in queries if not values(stack.prometheus, expr)]
    assert not empty, f"dashboard queries without data: {empty}"


def test_every_alert_expression_parses_and_has_data(stack: Monitored, traffic: dict) -> None:
    quiet = set()
    for alert, expr in alert_queries():
        result = values(stack.prometheus, expr)  # fails on a parse error
        if alert in QUIET_ALERTS:
            assert THRESHOLD.search(expr), expr
            quiet.add(alert)
            measured = THRESHOLD.sub("", expr)
            assert values(stack.prometheus, measured), f"{alert}: no data for {measured}"
        else:
            assert result, f"{alert} should fire on this traffic: {expr}"
    assert quiet == QUIET_ALERTS
