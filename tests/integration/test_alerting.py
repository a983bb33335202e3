"""Alerts that reach someone: a real drift run makes Prometheus fire ``BikecountDataDrift``, and
Alertmanager delivers it to a generic, a Slack-compatible and a Discord-compatible webhook.

MLflow and the RegModel API run as in the other integration tests; Prometheus and Alertmanager
(Debian's ``prometheus`` and ``prometheus-alertmanager``; ``make system-deps``) run from the
command lines and configs ``bikecount up --monitoring`` uses (``bikecount.stack.services``,
``bikecount.monitoring.alerting``), under the stack's own process manager. The receivers are
one local HTTP server in the test that records what it is sent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import (
    REGMODEL_APP,
    Receiver,
    Tracking,
    api_env,
    receiving,
    running,
    start_api,
    write_test_data,
)

import helpers
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.monitoring.alerting import alertmanager_config, write_alertmanager_config
from bikecount.stack.processes import ProcessManager
from bikecount.stack.prometheus import write_prometheus_config
from bikecount.stack.services import (
    REGMODEL,
    ServiceSpec,
    alertmanager_config_file,
    alertmanager_program,
    alertmanager_service,
    prometheus_service,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or alertmanager_program() is None,
        reason="apt-get install prometheus prometheus-alertmanager (make system-deps)",
    ),
]

ALERT = "BikecountDataDrift"
DELIVERY_TIMEOUT = 120
TRAIN = {"model_type": "rf", "data_source": "reference", "env": "dev", "test_mode": True}


def alert_settings(root: Path, receiver: Receiver) -> Settings:
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    return Settings(
        _env_file=None,
        logs_dir=root / "logs",
        alert_webhook_url=f"{url}/webhook",
        alert_slack_webhook_url=f"{url}/slack",
        alert_discord_webhook_url=f"{url}/discord",
        alert_group_wait_seconds=1,
        alert_group_interval_seconds=1,
    )


def delivered(receiver: Receiver) -> bool:
    paths = {"/webhook", "/slack", "/discord"}
    return paths <= set(receiver.received) and all(
        ALERT in json.dumps(receiver.received[path]) for path in paths
    )


@pytest.fixture(scope="module")
def received(
    tmp_path_factory: pytest.TempPathFactory, tracking: Tracking
) -> Iterator[dict[str, list[dict]]]:
    """Drift planted through POST /monitor; what the receivers got once the alert arrived."""
    root = tmp_path_factory.mktemp("alerting")
    data = write_test_data(root / "data")
    current = read_records(data.dataset_path("current")).fillna("")
    api = start_api("regmodel", REGMODEL_APP, root, api_env(root, tracking))
    with receiving() as receiver, running(api):
        settings = alert_settings(root, receiver)
        alertmanager_port, prometheus_port = helpers.free_ports(2)
        api_port = int(api.url.rsplit(":", 1)[1])
        scraped = ServiceSpec(REGMODEL, (), "127.0.0.1", api_port, "--api-port", "a test")
        alertmanager = alertmanager_service(settings, "127.0.0.1", alertmanager_port)
        prometheus = prometheus_service(settings, "127.0.0.1", prometheus_port)
        write_alertmanager_config(settings, alertmanager_config_file(settings))
        write_prometheus_config(settings, [scraped, alertmanager, prometheus])
        with ProcessManager(root / "logs") as manager:
            for spec in (alertmanager, prometheus):
                manager.wait_healthy(manager.start(spec), 60)
            with httpx.Client(base_url=api.url, timeout=300) as client:
                assert client.post("/train", json=TRAIN).status_code == 200
                drift = client.post("/monitor", json={"records": helpers.shifted_records(current)})
                assert drift.status_code == 200 and drift.json()["drift_detected"], drift.text
            helpers.wait_until(
                lambda: delivered(receiver),
                DELIVERY_TIMEOUT,
                f"{ALERT} delivered",
                lambda: (
                    f"{receiver.received}\n"
                    + str({p.name: p.read_text()[-2000:] for p in (root / "logs").glob("*.log")})
                ),
                interval=1,
            )
        yield receiver.received


def test_the_generic_webhook_gets_name_severity_and_an_actionable_summary(
    received: dict[str, list[dict]],
) -> None:
    payload = next(p for p in received["/webhook"] if ALERT in json.dumps(p))
    assert payload["receiver"] == "bikecount" and payload["status"] == "firing"
    alert = next(a for a in payload["alerts"] if a["labels"]["alertname"] == ALERT)
    assert alert["labels"]["severity"] == "warning"
    summary = alert["annotations"]["summary"]
    # What to do, not only what happened: where to read the drift, how to retrain.
    assert "drift" in summary and "retrain" in summary and "POST /train" in summary


def test_slack_and_discord_get_a_message_a_person_reads(received: dict[str, list[dict]]) -> None:
    slack = next(p for p in received["/slack"] if ALERT in json.dumps(p))
    attachment = slack["attachments"][0]
    assert f"{ALERT} (warning)" in attachment["title"] and "FIRING" in attachment["title"]
    assert "retrain" in attachment["text"] and "[warning]" in attachment["text"]
    discord = next(p for p in received["/discord"] if ALERT in json.dumps(p))
    embed = discord["embeds"][0]
    assert f"{ALERT} (warning)" in embed["title"]
    assert "retrain" in embed["description"]


@pytest.mark.parametrize(
    "urls",
    [
        {},
        {"alert_webhook_url": "http://127.0.0.1:9/hook"},
        {"alert_slack_webhook_url": "https://hooks.slack.com/services/T0/B0/x"},
        {"alert_discord_webhook_url": "https://discord.com/api/webhooks/1/x"},
    ],
    ids=["none", "webhook", "slack", "discord"],
)
def test_amtool_accepts_every_receiver_configuration(tmp_path: Path, urls: dict[str, str]) -> None:
    if shutil.which("amtool") is None:
        pytest.fail("amtool missing: apt-get install prometheus-alertmanager (make system-deps)")
    settings = Settings(_env_file=None, **urls)
    path = write_alertmanager_config(settings, tmp_path / "alertmanager.yml")
    done = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.stat().st_mode & 0o077 == 0  # the URLs are secrets
    receiver = alertmanager_config(settings)["receivers"][0]
    assert len([key for key in receiver if key.endswith("_configs")]) == len(urls)
