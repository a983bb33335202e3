"""deploy/grafana/dashboards against Grafana's own schema: each dashboard loads under the
schema version it declares, with Grafana Foundation SDK (Grafana's models of its dashboards,
generated from the schemas Grafana itself validates), for the Grafana release compose runs.

The structural and PromQL checks are in tests/unit/stack/test_prometheus.py and
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from helpers import REPO

DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))

# Panel types and their typed options: a panel whose options the SDK cannot type is unknown.
register_default_plugins()


def sdk_grafana_version() -> str:
    """The Grafana release the installed SDK models (``EPOCH!MAJOR.MINOR.PATCH``)."""
    return version("grafana-foundation-sdk").split("!")[-1]


def lost_keys(ours: Any, loaded: Any, path: str = "") -> list[str]:
    """Paths of what ``ours`` has and the loaded model dropped or changed."""
    if isinstance(ours, dict):
        if not isinstance(loaded, dict):
            return [path]
        return [
            lost
            for key, value in ours.items()
            for lost in (
                [f"{path}/{key}"]
                if key not in loaded
                else lost_keys(value, loaded[key], f"{path}/{key}")
            )
        ]
    if isinstance(ours, list):
        if not isinstance(loaded, list) or len(loaded) != len(ours):
            return [path]
        return [
            lost
            for i, pair in enumerate(zip(ours, loaded, strict=True))
            for lost in lost_keys(*pair, f"{path}[{i}]")
        ]
    return [] if ours == loaded else [path]


def test_the_sdk_models_the_grafana_that_compose_runs() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    image_version = services["grafana"]["image"].split(":")[1]
    assert image_version.split(".")[:2] == sdk_grafana_version().split(".")[:2]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_declares_the_schema_version_of_its_grafana(path: Path) -> None:
    declared = json.loads(path.read_text())["schemaVersion"]
    assert declared == Dashboard().schema_version, (declared, sdk_grafana_version())


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_loads_under_its_schema_without_losing_a_field(path: Path) -> None:
    ours = json.loads(path.read_text())

    dashboard = Dashboard.from_json(ours)
    loaded = json.loads(JSONEncoder().encode(dashboard))

    # Every field we wrote is one the schema knows, with the value we gave it.
    assert lost_keys(ours, loaded) == []
    assert dashboard.uid == ours["uid"] and dashboard.panels


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_is_a_known_type_with_prometheus_queries(path: Path) -> None:
    dashboard = Dashboard.from_json(json.loads(path.read_text()))
    for panel in dashboard.panels or []:
        assert isinstance(panel, Panel), panel
        # Options typed by the panel type's plugin (an unknown type keeps a bare dict).
        assert panel.options is None or not isinstance(panel.options, dict), panel.type
        for target in panel.targets or []:
            assert isinstance(target, prometheus.Dataquery), (panel.title, target)
            assert target.expr, panel.title
