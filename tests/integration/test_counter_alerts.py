"""Counter faults reach someone: the daily health step posts them to a real Alertmanager, which
delivers the fault to the receiver and, once the counter works again, its resolution.

Alertmanager (Debian's ``prometheus-alertmanager``; ``make system-deps``) runs from the command
line and configuration ``bikecount up --monitoring`` uses, under the stack's process manager;
the receiver is a local HTTP server recording what it is sent. The formats are Alertmanager's:
alerts posted as ``postableAlerts`` and listed as ``gettableAlerts`` by its API v2
(https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml), delivered as the
webhook's JSON (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config:
``status``, ``alerts[].labels``, ``.annotations``, ``.startsAt``, ``.endsAt``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import Receiver, receiving

import helpers
from bikecount.config import Settings
from bikecount.monitoring.alerting import write_alertmanager_config
from bikecount.monitoring.counter_alerts import ALERT_NAME
from bikecount.pipeline.health import check_day
from bikecount.stack.processes import ProcessManager
from bikecount.stack.services import (
    alertmanager_config_file,
    alertmanager_program,
    alertmanager_service,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        alertmanager_program() is None,
        reason="apt-get install prometheus-alertmanager (make system-deps)",
    ),
]

DAY = helpers.HEALTH_DAY
DELIVERY_TIMEOUT = 60


def webhook_alerts(receiver: Receiver, status: str) -> list[dict[str, Any]]:
    """Every alert of ours the webhook was sent with ``status`` (firing, resolved)."""
    return [
        alert
        for payload in receiver.received.get("/webhook", [])
        for alert in payload["alerts"]
        if alert["labels"]["alertname"] == ALERT_NAME and alert["status"] == status
    ]


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A store whose latest day is DAY, one counter out from 8:00: the check of DAY posted to
    Alertmanager; then the day after stored and checked. What Alertmanager listed and
    delivered after each."""
    root: Path = tmp_path_factory.mktemp("counter-alerts")
    frame = helpers.generate_canonical(helpers.HEALTH_CONFIG)
    broken = sorted(frame["counter"].unique())[0]
    port = helpers.free_port()
    with receiving() as receiver, ProcessManager(root / "logs") as manager:
        settings = Settings(
            _env_file=None,
            logs_dir=root / "logs",
            pipeline_db_url=f"sqlite:///{root / 'pipeline.db'}",
            alert_webhook_url=f"http://127.0.0.1:{receiver.server_address[1]}/webhook",
            alert_group_wait_seconds=1,
            alert_group_interval_seconds=1,
            alertmanager_url=f"http://127.0.0.1:{port}",
        )
        write_alertmanager_config(settings, alertmanager_config_file(settings))
        manager.wait_healthy(manager.start(alertmanager_service(settings, "127.0.0.1", port)), 60)

        def logs() -> str:
            tails = [p.read_text()[-2000:] for p in (root / "logs").glob("*.log")]
            return f"{receiver.received}\n" + "\n".join(tails)

        helpers.fill_health_store(settings, frame, broken, through=0)
        first = check_day(settings, DAY)
        listed = httpx.get(f"{settings.alertmanager_url}/api/v2/alerts", timeout=10).json()
        helpers.wait_until(
            lambda: webhook_alerts(receiver, "firing"), DELIVERY_TIMEOUT, "fault delivered", logs
        )
        helpers.fill_health_store(settings, frame, broken, through=1)
        second = check_day(settings, DAY + timedelta(days=1))
        helpers.wait_until(
            lambda: webhook_alerts(receiver, "resolved"), DELIVERY_TIMEOUT, "end delivered", logs
        )
        active = httpx.get(f"{settings.alertmanager_url}/api/v2/alerts", timeout=10).json()
        yield {
            "broken": broken, "first": first, "second": second, "listed": listed,
            "active": active, "receiver": receiver,
        }  # fmt: skip


def test_alertmanager_lists_one_alert_for_the_broken_counter(delivery: dict[str, Any]) -> None:
    ours = [a for a in delivery["listed"] if a["labels"]["alertname"] == ALERT_NAME]
    assert [a["labels"]["counter"] for a in ours] == [delivery["broken"]]
    assert ours[0]["status"]["state"] == "active"
    assert ours[0]["startsAt"].startswith("2021-03-24T07:00:00")  # 8:00 in Paris
    assert ours[0]["annotations"]["status"] == "outage"
    assert delivery["first"].alerts.startswith("sent to http://127.0.0.1:")
    assert delivery["first"].alerts.endswith(": 1 firing, 0 resolved")


def test_the_receiver_gets_the_fault_with_what_to_do(delivery: dict[str, Any]) -> None:
    first = delivery["receiver"].received["/webhook"][0]
    assert first["status"] == "firing" and len(first["alerts"]) == 1  # no word of the others
    (alert,) = webhook_alerts(delivery["receiver"], "firing")
    assert alert["labels"]["counter"] == delivery["broken"]
    assert alert["labels"]["severity"] == "warning"
    summary = alert["annotations"]["summary"]
    assert delivery["broken"] in summary and "outage" in summary
    assert "zeros or no data" in summary and "check the counter" in summary


def test_the_receiver_hears_when_the_counter_works_again(delivery: dict[str, Any]) -> None:
    (alert,) = webhook_alerts(delivery["receiver"], "resolved")
    assert alert["labels"]["counter"] == delivery["broken"]
    assert delivery["second"].faults == []
    assert delivery["second"].alerts.endswith(": 0 firing, 1 resolved")
    assert [a for a in delivery["active"] if a["labels"]["alertname"] == ALERT_NAME] == []
