"""deploy/prometheus and deploy/grafana: checked by Prometheus' own promtool, and for coherence.

``promtool`` comes with Debian's ``prometheus`` package (``make system-deps`` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bikecount.config import Settings
from bikecount.stack.prometheus import write_prometheus_config
from bikecount.stack.services import StackOptions, build_services
from helpers import REPO

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
ALERTS = {
    "BikecountApiDown",
    "BikecountHighErrorRate",
    "BikecountHighLatencyP99",
    "BikecountDataDrift",
    "BikecountChampionR2Low",
}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: apt-get install prometheus (make system-deps)",
)

# Synthetic series for `promtool test rules`: each alert fires on what it is meant to catch.
API = 'job="regmodel", route="/predict"'
INPUT_SERIES = {
    'up{job="regmodel", instance="api:8000"}': "0x20",
    f'bikecount_http_requests_total{{{API}, status="200"}}': "0+60x20",
    f'bikecount_http_requests_total{{{API}, status="503"}}': "0+30x20",  # a third fails
    f'bikecount_http_request_duration_seconds_bucket{{{API}, le="1"}}': "0+1x20",
    f'bikecount_http_request_duration_seconds_bucket{{{API}, le="5"}}': "0+5x20",  # p99 > 5 s
    f'bikecount_http_request_duration_seconds_bucket{{{API}, le="+Inf"}}': "0+10x20",
    'bikecount_drift_detected{job="regmodel"}': "1x20",
    'bikecount_champion_metric{job="regmodel", model_type="rf", metric="r2"}': "0.2x20",
}
EXPECTED_ALERTS = {
    "BikecountApiDown": {"severity": "critical", "instance": "api:8000"},
    "BikecountHighErrorRate": {"severity": "warning"},
    "BikecountHighLatencyP99": {"severity": "warning"},
    "BikecountDataDrift": {"severity": "warning"},
    "BikecountChampionR2Low": {"severity": "warning", "model_type": "rf", "metric": "r2"},
}


def rule_tests() -> dict[str, Any]:
    """A `promtool test rules` file: at 20 min (longest `for:` 10 min) every alert fires."""
    alert_tests = [
        {
            "eval_time": "20m",
            "alertname": name,
            "exp_alerts": [{"exp_labels": {"job": "regmodel", **labels}}],
        }
        for name, labels in EXPECTED_ALERTS.items()
    ]
    series = [{"series": name, "values": values} for name, values in INPUT_SERIES.items()]
    return {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alert_tests}],
    }


def run_promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@needs_promtool
def test_promtool_accepts_the_config() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALERTS)} rules found" in result.stdout


@needs_promtool
def test_each_alert_fires_on_what_it_watches(tmp_path: Path) -> None:
    # Annotations are for humans; promtool would compare their text too, so they are left out.
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(rule_tests()))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_are_the_five_alerts() -> None:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    assert {rule["alert"] for group in groups for rule in group["rules"]} == ALERTS


def test_three_dashboards_use_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources}
    assert [path.stem for path in DASHBOARDS] == [
        "bikecount-api",
        "bikecount-drift",
        "bikecount-models",
    ]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] == path.stem
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert panel["targets"] and all(target["expr"] for target in panel["targets"])


def test_dashboards_are_provisioned_from_where_compose_mounts_them() -> None:
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "bikecount.yml").read_text()
    )["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_queries_only_name_bikecount_metrics_or_up(path: Path) -> None:
    for expr in dashboard_exprs(json.loads(path.read_text())):
        assert "bikecount_" in expr or expr.startswith("up{"), expr


@needs_promtool
def test_bikecount_up_writes_a_config_promtool_accepts(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, logs_dir=tmp_path / "logs", prometheus_port=9091)
    services = build_services(settings, StackOptions(legacy=True, monitoring=True, dashboard=False))
    path = write_prometheus_config(settings, services)
    config = yaml.safe_load(path.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {"regmodel": ["127.0.0.1:8000"], "classmodel": ["127.0.0.1:8080"]}
    assert config["rule_files"] == [str(PROMETHEUS_DIR / "alerts.yml")]
    result = run_promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    prometheus = services[-1]
    assert prometheus.command[0] == "prometheus" and prometheus.health_path == "/-/healthy"
    assert f"--config.file={path.resolve()}" in prometheus.command
    assert "--web.listen-address=127.0.0.1:9091" in prometheus.command
