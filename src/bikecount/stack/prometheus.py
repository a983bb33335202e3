"""The local Prometheus's configuration: which of the stack's services it scrapes, with our alert
rules, and the Alertmanager it sends what fires to. ``bikecount up --monitoring`` writes it
before Prometheus starts (see :func:`bikecount.stack.services.prometheus_service` for its
command line)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from bikecount.config import Settings
from bikecount.stack.addresses import client_host, host_port
from bikecount.stack.services import (
    ALERTMANAGER,
    CLASSMODEL,
    REGMODEL,
    ServiceSpec,
    package_dir,
    prometheus_dir,
)

# Local scrapes are cheap: a short interval shows traffic in Grafana-like queries at once.
LOCAL_SCRAPE_INTERVAL = "5s"


def alert_rules_file() -> Path | None:
    """``deploy/prometheus/alerts.yml`` of a source checkout (absent from an installed wheel)."""
    path = Path(package_dir()).parents[1] / "deploy" / "prometheus" / "alerts.yml"
    return path if path.is_file() else None


def prometheus_config(
    targets: Mapping[str, str],
    rules_file: Path | None = None,
    scrape_interval: str = LOCAL_SCRAPE_INTERVAL,
    alertmanagers: Sequence[str] = (),
) -> dict[str, object]:
    """A Prometheus config scraping ``targets`` (job name -> ``host:port``) with our rules,
    sending what fires to ``alertmanagers`` (``host:port``).

    The jobs carry the service names (``regmodel``, ``classmodel``), as in
    ``deploy/prometheus/prometheus.yml``, so the alert rules and dashboards apply unchanged.
    """
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(rules_file)] if rules_file else [],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [*alertmanagers]}]}]
        }
    return config


def scrape_target(spec: ServiceSpec) -> str:
    """``host:port`` that a local Prometheus scrapes for a service."""
    return host_port(client_host(spec.host), spec.port)


def write_prometheus_config(settings: Settings, services: Sequence[ServiceSpec]) -> Path:
    """Write the local Prometheus config: scrape the stack's APIs, with the alert rules, and
    send alerts to the stack's Alertmanager when it has one."""
    targets = {s.name: scrape_target(s) for s in services if s.name in (REGMODEL, CLASSMODEL)}
    alertmanagers = [scrape_target(s) for s in services if s.name == ALERTMANAGER]
    path = prometheus_dir(settings) / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = prometheus_config(targets, alert_rules_file(), alertmanagers=alertmanagers)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
