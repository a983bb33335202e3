"""The command lines, environments and health URLs of the stack's services."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.server.security_utils import is_allowed_host_header

from bikecount.config import Settings
from bikecount.stack import PortInUseError, check_ports, port_is_free
from bikecount.stack.addresses import allowed_hosts, client_host
from bikecount.stack.services import (
    CLASSMODEL,
    CLASSMODEL_APP,
    DASHBOARD,
    MLFLOW,
    REGMODEL,
    REGMODEL_APP,
    ServiceSpec,
    StackOptions,
    build_services,
    package_dir,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        mlruns_dir=tmp_path / "mlruns_dev",
        artifacts_dir=tmp_path / "mlflow_artifacts",
    )


LISTEN = {"host", "mlflow_port", "api_port", "classmodel_port", "dashboard_port"}


def plan(settings: Settings, **given: object) -> list[ServiceSpec]:
    """The services of ``given`` options, where listening settings (host, ports) are overrides
    of the settings, as ``bikecount up`` makes them."""
    listen = {key: value for key, value in given.items() if key in LISTEN}
    flags: dict[str, Any] = {"dashboard": False}
    flags.update({key: value for key, value in given.items() if key not in LISTEN})
    return build_services(settings.model_copy(update=listen), StackOptions(**flags))


def services_by_name(settings: Settings, **given: object) -> dict[str, ServiceSpec]:
    return {spec.name: spec for spec in plan(settings, **given)}


def option_value(command: tuple[str, ...], option: str) -> str:
    return command[command.index(option) + 1]


def test_default_stack_is_mlflow_then_regmodel(settings: Settings) -> None:
    specs = plan(settings)
    assert [spec.name for spec in specs] == [MLFLOW, REGMODEL]


def test_legacy_adds_classmodel_last(settings: Settings) -> None:
    specs = plan(settings, legacy=True)
    assert [spec.name for spec in specs] == [MLFLOW, REGMODEL, CLASSMODEL]


def test_mlflow_command_line(settings: Settings, tmp_path: Path) -> None:
    mlflow = services_by_name(settings)[MLFLOW]
    command = mlflow.command
    assert command[:4] == (sys.executable, "-m", "mlflow", "server")
    assert option_value(command, "--host") == "127.0.0.1"
    assert option_value(command, "--port") == "5000"
    assert option_value(command, "--workers") == "1"
    backend = option_value(command, "--backend-store-uri")
    assert backend == f"sqlite:///{(tmp_path / 'mlruns_dev' / 'mlflow.db').resolve()}"
    artifacts = (tmp_path / "mlflow_artifacts").resolve()
    assert option_value(command, "--artifacts-destination") == str(artifacts)
    # What the CLI gives the experiments it creates: one store, with or without the server.
    assert option_value(command, "--default-artifact-root") == artifacts.as_uri()
    assert option_value(command, "--default-artifact-root") == settings.artifact_root("dev")
    assert mlflow.health_url == "http://127.0.0.1:5000/health"
    assert mlflow.env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_paths_are_absolute_whatever_the_settings_say(settings: Settings) -> None:
    # The server may run from another directory than the settings were read in.
    relative = settings.model_copy(
        update={"mlruns_dir": Path("mlruns_dev"), "artifacts_dir": Path("mlflow_artifacts")}
    )
    command = services_by_name(relative)[MLFLOW].command
    assert option_value(command, "--backend-store-uri").startswith("sqlite:////")
    assert Path(option_value(command, "--artifacts-destination")).is_absolute()


@pytest.mark.parametrize(
    ("name", "app", "port"),
    [(REGMODEL, REGMODEL_APP, "8000"), (CLASSMODEL, CLASSMODEL_APP, "8080")],
)
def test_api_command_lines(settings: Settings, name: str, app: str, port: str) -> None:
    spec = services_by_name(settings, legacy=True)[name]
    assert spec.command == (
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        port,
    )
    assert spec.health_url == f"http://127.0.0.1:{port}/health"


def test_apis_talk_to_the_started_mlflow(settings: Settings) -> None:
    specs = services_by_name(settings, mlflow_port=5123, legacy=True)
    for name in (REGMODEL, CLASSMODEL):
        assert specs[name].env == {
            "BIKECOUNT_MLFLOW_TRACKING_URI": "http://127.0.0.1:5123",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5123",
            "OMP_NUM_THREADS": "1",
        }


def test_reload_watches_the_package_folder(settings: Settings) -> None:
    spec = services_by_name(settings, reload=True)[REGMODEL]
    assert spec.command[-3:] == ("--reload", "--reload-dir", package_dir())
    assert (Path(package_dir()) / "stack" / "services.py").is_file()


def test_wildcard_bind_is_reached_through_loopback(settings: Settings) -> None:
    specs = services_by_name(settings, host="0.0.0.0")
    assert option_value(specs[MLFLOW].command, "--host") == "0.0.0.0"
    assert specs[REGMODEL].url == "http://127.0.0.1:8000"
    assert specs[REGMODEL].env["BIKECOUNT_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert client_host("::") == "127.0.0.1"


def test_ipv6_hosts_are_bracketed_in_urls(settings: Settings) -> None:
    spec = services_by_name(settings, host="::1")[REGMODEL]
    assert spec.health_url == "http://[::1]:8000/health"


@pytest.mark.parametrize(
    ("bind", "accepted", "refused"),
    [
        ("127.0.0.1", ["localhost:5000", "127.0.0.1:5000", "localhost"], ["evil.com", "10.0.0.5"]),
        ("myhost.lan", ["myhost.lan:5000", "localhost:5000"], ["evil.com:5000"]),
        ("0.0.0.0", ["localhost:5000", "192.168.1.20:5000", "172.18.0.3:5000"], ["evil.com"]),
    ],
)
def test_allowed_hosts_as_mlflow_reads_them(
    bind: str, accepted: list[str], refused: list[str]
) -> None:
    # Checked with MLflow's own matcher: MLflow 3 answers 403 to any other Host header.
    hosts = allowed_hosts(bind)
    for host in accepted:
        assert is_allowed_host_header(hosts, host), host
    for host in refused:
        assert not is_allowed_host_header(hosts, host), host


def test_services_listen_where_the_settings_say(settings: Settings) -> None:
    custom = settings.model_copy(update={"mlflow_port": 6001, "api_port": 6002, "host": "::1"})
    mlflow, api = build_services(custom, StackOptions(dashboard=False))
    assert (mlflow.host, mlflow.port, api.host, api.port) == ("::1", 6001, "::1", 6002)
    assert not StackOptions().legacy


def test_plan_follows_options(settings: Settings) -> None:
    names = [spec.name for spec in build_services(settings, StackOptions(legacy=True))]
    assert names == [MLFLOW, REGMODEL, CLASSMODEL, DASHBOARD]  # the dashboard by default
    assert [s.name for s in build_services(settings, StackOptions(dashboard=False))] == [
        MLFLOW,
        REGMODEL,
    ]


def test_the_dashboard_reads_the_stack_it_is_started_with(settings: Settings) -> None:
    custom = settings.model_copy(update={"dashboard_port": 8599})
    mlflow, api, dashboard = build_services(custom)
    assert dashboard.port == 8599 and dashboard.health_path == "/_stcore/health"
    assert dashboard.command[1:4] == ("-m", "streamlit", "run")
    assert Path(dashboard.command[4]).is_file()  # the app script ships in the package
    assert dashboard.env["BIKECOUNT_PIPELINE_API_URL"] == api.url
    assert dashboard.env["BIKECOUNT_MLFLOW_TRACKING_URI"] == mlflow.url
    store = dashboard.env["BIKECOUNT_PIPELINE_DB_URL"]
    assert store.startswith("sqlite:////")  # absolute: the same file whatever the cwd


def test_settings_read_ports_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIKECOUNT_MLFLOW_PORT", "5999")
    monkeypatch.setenv("BIKECOUNT_LOGS_DIR", "elsewhere")
    loaded = Settings(_env_file=None)
    assert loaded.mlflow_port == 5999
    assert loaded.logs_dir == Path("elsewhere")
    assert (loaded.host, loaded.api_port, loaded.classmodel_port) == ("127.0.0.1", 8000, 8080)


def test_taken_port_is_refused_with_the_option_to_change_it(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        specs = plan(settings, mlflow_port=port, api_port=0)
        with pytest.raises(PortInUseError) as caught:
            check_ports(specs)
    assert str(caught.value) == (
        f"port {port} is in use (by another MLflow?): stop it or pass --mlflow-port"
    )


def test_same_port_twice_is_refused(settings: Settings) -> None:
    specs = plan(settings, mlflow_port=0, api_port=0, classmodel_port=0, legacy=True)
    with pytest.raises(PortInUseError, match="asked for both mlflow and regmodel"):
        check_ports(specs)
