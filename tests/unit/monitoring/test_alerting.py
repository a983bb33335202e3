"""Where alerts go: the Alertmanager configuration made from the settings, and its place in
the local stack (``bikecount up --monitoring``). Delivery for real: test_alerting.py in
tests/integration."""

from __future__ import annotations

from pathlib import Path

import yaml

from bikecount.config import Settings
from bikecount.monitoring.alerting import RECEIVER, alertmanager_config, receiver_kinds
from bikecount.stack.prometheus import write_prometheus_config
from bikecount.stack.services import (
    ALERTMANAGER,
    PROMETHEUS,
    ServiceSpec,
    StackOptions,
    build_services,
)

URLS = {
    "alert_webhook_url": "http://127.0.0.1:9/hook",
    "alert_slack_webhook_url": "https://hooks.slack.com/services/T0/B0/x",
    "alert_discord_webhook_url": "https://discord.com/api/webhooks/1/x",
}


def test_every_url_set_becomes_a_configuration_of_the_one_receiver() -> None:
    settings = Settings(_env_file=None, **URLS)

    config = alertmanager_config(settings)

    assert config["route"]["receiver"] == RECEIVER
    (receiver,) = config["receivers"]
    assert receiver["webhook_configs"][0]["url"] == URLS["alert_webhook_url"]
    assert receiver["slack_configs"][0]["api_url"] == URLS["alert_slack_webhook_url"]
    assert receiver["discord_configs"][0]["webhook_url"] == URLS["alert_discord_webhook_url"]
    # Chat messages name the alert and its severity, and carry the rule's summary.
    for kind, field in (("slack_configs", "text"), ("discord_configs", "message")):
        assert "{{ .Annotations.summary }}" in receiver[kind][0][field]
        assert ".Labels.severity" in receiver[kind][0][field]
    assert receiver_kinds(settings) == ["webhook", "slack", "discord"]


def test_no_url_means_a_receiver_that_reaches_nobody() -> None:
    settings = Settings(_env_file=None)
    assert receiver_kinds(settings) == []
    assert alertmanager_config(settings)["receivers"] == [{"name": RECEIVER}]


def test_grouping_comes_from_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        alert_group_wait_seconds=5,
        alert_group_interval_seconds=60,
        alert_repeat_interval_minutes=30,
    )
    route = alertmanager_config(settings)["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "5s",
        "60s",
        "30m",
    )


def plan(tmp_path: Path, options: StackOptions, alertmanager_port: int = 9093) -> list[ServiceSpec]:
    settings = Settings(
        _env_file=None,
        logs_dir=tmp_path / "logs",
        host="127.0.0.1",
        alertmanager_port=alertmanager_port,
    )
    return build_services(settings, options)


def test_the_stack_starts_alertmanager_before_prometheus_and_points_it_there(
    tmp_path: Path,
) -> None:
    services = plan(
        tmp_path, StackOptions(monitoring=True, alertmanager=True), alertmanager_port=9393
    )
    names = [spec.name for spec in services]
    assert names.index(ALERTMANAGER) < names.index(PROMETHEUS)
    alertmanager = services[names.index(ALERTMANAGER)]
    assert "--web.listen-address=127.0.0.1:9393" in alertmanager.command
    assert "--cluster.listen-address=" in alertmanager.command  # no gossip port on 0.0.0.0
    assert alertmanager.health_path == "/-/healthy"

    settings = Settings(_env_file=None, logs_dir=tmp_path / "logs")
    config = yaml.safe_load(write_prometheus_config(settings, services).read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:9393"]


def test_without_alertmanager_prometheus_sends_alerts_nowhere(tmp_path: Path) -> None:
    services = plan(tmp_path, StackOptions(monitoring=True))
    assert ALERTMANAGER not in [spec.name for spec in services]
    settings = Settings(_env_file=None, logs_dir=tmp_path / "logs")
    assert "alerting" not in yaml.safe_load(write_prometheus_config(settings, services).read_text())
    # Alertmanager alone is of no use: without Prometheus it is not started.
    alone = plan(tmp_path, StackOptions(alertmanager=True))
    assert ALERTMANAGER not in [spec.name for spec in alone]


def test_airflow_posts_counter_faults_to_the_stacks_alertmanager(tmp_path: Path) -> None:
    with_it = plan(
        tmp_path,
        StackOptions(monitoring=True, alertmanager=True, airflow=True),
        alertmanager_port=9393,
    )
    airflow = next(spec for spec in with_it if spec.name == "airflow")
    assert airflow.env["BIKECOUNT_ALERTMANAGER_URL"] == "http://127.0.0.1:9393"
    without = plan(tmp_path, StackOptions(monitoring=True, airflow=True))
    airflow = next(spec for spec in without if spec.name == "airflow")
    assert "BIKECOUNT_ALERTMANAGER_URL" not in airflow.env
