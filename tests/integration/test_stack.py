"""The local stack for real: the process manager on stand-in processes, then ``bikecount up`` as a
user runs it (MLflow, both APIs, first-start training, Airflow running the DAGs), stopped by
SIGINT and by SIGTERM, with no process left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient
from opendata_server import serving
from servers import answers

import helpers
from bikecount.cli.stack import PREFIX_WIDTH
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.pipeline.store import known_counters, read_counts, read_table
from bikecount.pipeline.store import predictions as predictions_table
from bikecount.pipeline.store_engine import open_store
from bikecount.records import SNAKE_TO_EXPORT
from bikecount.stack.processes import ProcessManager, RestartPolicy, ServiceFailedError
from bikecount.stack.services import ServiceSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIKECOUNT = Path(sys.executable).parent / "bikecount"
START_TIMEOUT = 240  # first start on two busy cores: MLflow, four first models, two APIs
# What stopping may take by design: the background work's 3 s, the services' 10 s grace before a
# kill and 5 s after it, and up to 3 s a service to reap it and drain its log. On two busy cores
# an API cancelling its training job uses its whole grace; 20 s was less than the design allows.
STOP_TIMEOUT = 40

# A stand-in service: answers GET /health with 200, and starts a grandchild of its own (as
# MLflow and uvicorn --reload do) to prove that stopping reaches the whole tree. The grandchild
# sleeps only to stay alive until it is stopped.
STAND_IN = """
import http.server, signal, subprocess, sys
ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if "--stubborn" in sys.argv else ""
exec(ignore)
subprocess.Popen([sys.executable, "-c", "import signal, time; " + ignore + "time.sleep(600)"])

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

print("stand-in listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def prefix(service: str) -> str:
    """The prefix of a service's log lines in `bikecount up`'s output."""
    return f"{service:<{PREFIX_WIDTH}} | "


def stand_in(name: str, *args: str, port: int | None = None) -> ServiceSpec:
    port = port or helpers.free_port()
    command = (sys.executable, "-c", STAND_IN, str(port), *args)
    return ServiceSpec(name, command, "127.0.0.1", port, "--port", "a test")


# Serves like STAND_IN the first time; once its marker file exists (every restart), it cannot.
BREAKS_ON_RESTART = (
    """
import os, sys
marker = sys.argv[2]
if os.path.exists(marker):
    print("cannot start again: broken config", flush=True)
    raise SystemExit(3)
open(marker, "w").close()
"""
    + STAND_IN
)


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def with_grandchild(pid: int) -> bool:
    """Whether the stand-in ``pid`` has started its grandchild."""
    return len(tree(pid)) >= 2


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still alive; zombies are dead (only their exit status is left to collect)."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.NoSuchProcess:
            continue
    return left


# --- the process manager, on stand-ins ------------------------------------------------------


def test_manager_streams_logs_and_stops_the_whole_tree(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    manager = ProcessManager(tmp_path / "logs", on_line=lambda s, line: lines.append((s, line)))
    with manager:
        service = manager.start(stand_in("alpha"))
        manager.wait_healthy(service, timeout=30)
        helpers.wait_until(lambda: with_grandchild(service.process.pid), 30, "the grandchild up")
        family = tree(service.process.pid)
        assert len(family) >= 2
    assert not still_running(family)
    assert ("alpha", "stand-in listening") in lines
    assert "stand-in listening" in (tmp_path / "logs" / "alpha.log").read_text()


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "logs", grace_seconds=1.0)
    service = manager.start(stand_in("stubborn", "--stubborn"))
    manager.wait_healthy(service, timeout=30)
    # The whole tree ignores SIGTERM before it is stopped: only SIGKILL can end it.
    helpers.wait_until(
        lambda: (
            with_grandchild(service.process.pid)
            and all(
                helpers.ignores_signal(process, signal.SIGTERM)
                for process in tree(service.process.pid)
            )
        ),
        30,
        "the stubborn tree up and ignoring SIGTERM",
    )
    family = tree(service.process.pid)
    started = time.monotonic()
    manager.stop_all()
    assert time.monotonic() - started < 8
    assert not still_running(family)


def test_a_service_that_dies_reports_its_last_lines(tmp_path: Path) -> None:
    spec = stand_in("broken")
    spec = ServiceSpec(
        "broken",
        (sys.executable, "-c", "print('cannot start: no config'); raise SystemExit(3)"),
        spec.host,
        spec.port,
        "--port",
        "a test",
    )
    with ProcessManager(tmp_path / "logs") as manager:
        with pytest.raises(ServiceFailedError) as caught:
            manager.wait_healthy(manager.start(spec), timeout=30)
    assert "broken exited with code 3" in str(caught.value)
    assert caught.value.log_tail == ["cannot start: no config"]


def test_a_silent_service_times_out(tmp_path: Path) -> None:
    port = helpers.free_port()
    # A process that stays alive and never listens: its sleep is what is tested.
    spec = ServiceSpec(
        "mute", (sys.executable, "-c", "import time; time.sleep(60)"), "127.0.0.1", port, "-", "-"
    )
    with ProcessManager(tmp_path / "logs") as manager:
        service = manager.start(spec)
        with pytest.raises(ServiceFailedError, match="did not answer .* within 1 s"):
            manager.wait_healthy(service, timeout=1)
        family = tree(service.process.pid)
    assert not still_running(family)


def test_a_crashed_service_is_restarted_while_the_others_keep_running(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    policy = RestartPolicy(max_restarts=3, backoff_seconds=0.2, window_seconds=60)
    manager = ProcessManager(
        tmp_path / "logs", on_line=lambda s, line: lines.append((s, line)), restart=policy
    )
    with manager:
        alpha, beta = manager.start(stand_in("alpha")), manager.start(stand_in("beta"))
        for service in (alpha, beta):
            manager.wait_healthy(service, timeout=30)
            helpers.wait_until(
                lambda s=service: with_grandchild(s.process.pid), 30, "its grandchild up"
            )
        crashed, beta_pid = tree(alpha.process.pid), beta.process.pid
        supervisor = threading.Thread(target=manager.supervise, args=(0.1,), daemon=True)
        supervisor.start()

        os.kill(crashed[0].pid, signal.SIGKILL)  # the leader only: its child outlives it
        helpers.wait_until(
            lambda: alpha.restarts == 1 and alpha.healthy, 30, "restarted and healthy"
        )
        assert answers(alpha.spec.health_url)
        assert not still_running(crashed), "what was left of the crashed service was stopped"
        assert beta.process.pid == beta_pid and beta.process.poll() is None
        assert answers(beta.spec.health_url)
        family = tree(alpha.process.pid) + tree(beta.process.pid)
    supervisor.join(timeout=10)
    assert not supervisor.is_alive(), "supervise returns once the manager stops"
    assert not still_running(family)
    notices = [line for service, line in lines if line.startswith("[bikecount up]")]
    assert notices[0].startswith(
        "[bikecount up] alpha exited with code -9; restarting it in 0.2 s (crash 1 of 3"
    )
    assert any(line.startswith("[bikecount up] alpha is back") for line in notices)
    log = (tmp_path / "logs" / "alpha.log").read_text()
    assert log.count("stand-in listening") == 2
    assert "--- restarted by bikecount up (restart 1) ---" in log


def test_a_service_that_keeps_crashing_stops_the_stack(tmp_path: Path) -> None:
    port = helpers.free_port()
    command = (sys.executable, "-c", BREAKS_ON_RESTART, str(port), str(tmp_path / "marker"))
    fragile = ServiceSpec("fragile", command, "127.0.0.1", port, "--port", "a test")
    policy = RestartPolicy(max_restarts=2, backoff_seconds=0.1, window_seconds=60)
    with ProcessManager(tmp_path / "logs", restart=policy) as manager:
        steady = manager.start(stand_in("steady"))
        service = manager.start(fragile)
        for started in (steady, service):
            manager.wait_healthy(started, timeout=30)
        os.killpg(service.process.pid, signal.SIGKILL)
        with pytest.raises(ServiceFailedError) as caught:
            manager.supervise(poll_seconds=0.1)
        assert steady.process.poll() is None, "the others ran until the stack gave up"
        family = tree(steady.process.pid)
    assert not still_running(family)
    message = str(caught.value)
    assert message.startswith("fragile exited with code 3; it crashed 3 time(s) within 60 s")
    assert "giving up" in message and service.restarts == 2
    assert caught.value.log_tail[-1] == "cannot start again: broken config"


# --- bikecount up, as a user runs it --------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with small data sets (8 counters x 3 months), and no models yet."""
    home = tmp_path_factory.mktemp("stack")
    settings = Settings(_env_file=None, data_dir=home / "data")
    write_datasets(
        generate_records(SynthConfig(start="2020-09-01", months=3, n_counters=8)), settings
    )
    return home


def stack_env(ports: dict[str, int]) -> dict[str, str]:
    """This environment without any bikecount or MLflow setting, plus the ports to use."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BIKECOUNT_", "MLFLOW_"))
    }
    env.update({f"BIKECOUNT_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return env


@pytest.fixture
def ports() -> dict[str, int]:
    return dict(
        zip(("mlflow", "api", "classmodel", "dashboard"), helpers.free_ports(4), strict=True)
    )


@pytest.fixture
def no_leftovers(home: Path) -> Iterator[None]:
    """After the test, no live process works in ``home`` (what the stack starts does)."""
    yield
    left = []
    for process in psutil.process_iter(["cwd", "status"]):
        info = process.info
        if info["status"] != psutil.STATUS_ZOMBIE and info["cwd"] and info["cwd"] == str(home):
            left.append(process)
    for process in left:
        process.kill()  # clean up for the next test, then fail
    assert not left, f"left running: {[p.cmdline() for p in left]}"


def wait_until_healthy(up: subprocess.Popen[bytes], urls: list[str], output: Path) -> None:
    """Wait for each of ``urls`` to answer; fail at once, with its output, if ``up`` exits."""
    for url in urls:

        def ready(url: str = url) -> bool:
            if up.poll() is not None:
                pytest.fail(f"bikecount up exited with {up.returncode}:\n{output.read_text()}")
            return answers(url)

        helpers.wait_until(ready, START_TIMEOUT, f"answering at {url}", output.read_text)


def stop(up: subprocess.Popen[bytes]) -> None:
    """Stop ``bikecount up`` if a failed assertion left it running (it then stops its children)."""
    if up.poll() is None:
        up.terminate()
        try:
            up.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            up.kill()


def sample_records(home: Path, n: int = 3) -> list[dict[str, str]]:
    frame = read_records(home / "data" / "test_sample.csv").head(n)
    return [
        {
            "nom_du_compteur": str(row["Nom du compteur"]),
            "date_et_heure_de_comptage": str(row["Date et heure de comptage"]),
            "coordonnées_géographiques": str(row["Coordonnées géographiques"]),
        }
        for _, row in frame.iterrows()
    ]


@pytest.mark.parametrize(
    ("stop_signal", "options"),
    [(signal.SIGINT, []), (signal.SIGTERM, ["--reload"])],
    ids=["sigint", "sigterm-reload"],
)
def test_up_serves_predictions_and_stops_cleanly(
    home: Path,
    ports: dict[str, int],
    stop_signal: signal.Signals,
    options: list[str],
    no_leftovers: None,
) -> None:
    # The first run trains the first models; the second finds and reuses them, with hot reload
    # on (uvicorn's reloader adds a process per API: all must stop too).
    first_start = not (home / "mlruns_dev" / "mlflow.db").exists()
    output = home / f"up-{stop_signal.name}.txt"
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [str(BIKECOUNT), "up", "--legacy", *options],
            cwd=home,
            env=stack_env(ports),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        legacy = f"http://127.0.0.1:{ports['classmodel']}"
        dashboard = f"http://127.0.0.1:{ports['dashboard']}/_stcore/health"
        wait_until_healthy(up, [f"{api}/health", f"{legacy}/health", dashboard], output)
        records = sample_records(home)
        # The first request may load the model from MLflow: slow on a busy machine.
        answer = httpx.post(
            f"{api}/predict", json={"records": records, "model_type": "rf"}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == len(records)
        answer = httpx.post(f"{legacy}/predict", json={"records": records}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert set(answer.json()["label"]) <= {"faible", "forte"}
        assert httpx.get(f"http://127.0.0.1:{ports['mlflow']}/health").status_code == 200

        family = tree(up.pid)
        up.send_signal(stop_signal)
        assert up.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        stop(up)
    assert not still_running(family), [p.cmdline() for p in still_running(family)]

    text = output.read_text()
    assert f"{stop_signal.name}: every service stopped." in text
    if first_start:  # Rich wraps lines at the width of a terminal it cannot see: 80 columns
        assert (
            "no model registered for rf, gbm, nn, ensemble, rf_class: training first models"
        ) in " ".join(text.split())
    else:
        assert "models found for rf, gbm" in text  # nothing trained twice
    assert f"{api}/docs" in text and f"{api}/redoc" in text and "curl -X POST" in text
    # Access logs and start-up chatter go to the logs only; the console has the progress.
    assert '"POST /predict HTTP/1.1" 200' not in text and "View run" not in text
    assert '"POST /predict HTTP/1.1" 200' in (home / "logs" / "regmodel.log").read_text()
    if "--reload" in options:
        assert "Will watch for changes" in (home / "logs" / "regmodel.log").read_text()
    for service in ("mlflow", "regmodel", "classmodel", "dashboard"):
        assert (home / "logs" / f"{service}.log").stat().st_size > 0
    assert_champion_loads_without_server(home, "rf", records)


def assert_champion_loads_without_server(
    home: Path, model_type: str, records: list[dict[str, str]]
) -> None:
    """What the stack trained stays usable by the CLI once it is stopped (same store, no server)."""
    store = f"sqlite:///{home / 'mlruns_dev' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    name = f"bikecount-{model_type}"
    champion = client.get_model_version_by_alias(name, "champion")
    uri = client.get_model_version_download_uri(name, champion.version)
    assert uri.startswith("file://"), uri
    model = mlflow.sklearn.load_model(uri)
    frame = pd.DataFrame(records).rename(columns=SNAKE_TO_EXPORT)
    assert len(model.predict(frame)) == len(records)


def service_leader(up: subprocess.Popen[bytes], marker: str) -> psutil.Process:
    """The child of ``bikecount up`` whose command line holds ``marker`` (a group leader)."""
    for child in psutil.Process(up.pid).children():
        if marker in " ".join(child.cmdline()):
            return child
    raise AssertionError(f"no child of bikecount up runs {marker!r}")


def test_up_restarts_a_killed_service_and_keeps_the_others_serving(
    home: Path, ports: dict[str, int], no_leftovers: None
) -> None:
    output = home / "up-restart.txt"
    env = {**stack_env(ports), "BIKECOUNT_STACK_RESTART_BACKOFF_SECONDS": "0.5"}
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [str(BIKECOUNT), "up"], cwd=home, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        mlflow_url = f"http://127.0.0.1:{ports['mlflow']}"
        wait_until_healthy(up, [f"{mlflow_url}/health", f"{api}/health"], output)
        body = {"records": sample_records(home), "model_type": "rf"}
        first = httpx.post(f"{api}/predict", json=body, timeout=120)
        assert first.status_code == 200, first.text

        # MLflow dies: the API keeps serving its cached model while MLflow is restarted.
        mlflow_server, api_server = service_leader(up, "mlflow"), service_leader(up, "uvicorn")
        os.killpg(mlflow_server.pid, signal.SIGKILL)
        answered = [httpx.post(f"{api}/predict", json=body, timeout=60) for _ in range(5)]
        assert [r.status_code for r in answered] == [200] * 5, answered[-1].text
        helpers.wait_until(lambda: answers(f"{mlflow_url}/health"), START_TIMEOUT, "MLflow back")
        assert up.poll() is None and api_server.is_running()
        assert service_leader(up, "mlflow").pid != mlflow_server.pid

        # The API dies: it is restarted, MLflow is left alone.
        mlflow_server = service_leader(up, "mlflow")
        os.killpg(api_server.pid, signal.SIGKILL)
        helpers.wait_until(lambda: answers(f"{api}/health"), START_TIMEOUT, "the API back")
        assert service_leader(up, "uvicorn").pid != api_server.pid
        assert service_leader(up, "mlflow").pid == mlflow_server.pid
        again = httpx.post(f"{api}/predict", json=body, timeout=120)
        assert again.status_code == 200, again.text

        family = tree(up.pid)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        stop(up)
    assert not still_running(family), [p.cmdline() for p in still_running(family)]
    text = " ".join(output.read_text().split())
    assert "[bikecount up] mlflow exited with code -9; restarting it in 0.5 s" in text
    assert "[bikecount up] mlflow is back" in text
    assert "[bikecount up] regmodel exited with code -9; restarting it in 0.5 s" in text
    assert "[bikecount up] regmodel is back" in text
    assert "SIGINT: every service stopped." in text


def test_a_taken_port_fails_clearly_and_starts_nothing(
    home: Path, ports: dict[str, int], no_leftovers: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["mlflow"]))
        taken.listen()
        result = subprocess.run(
            [str(BIKECOUNT), "up"],
            cwd=home,
            env=stack_env(ports),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    message = (
        f"port {ports['mlflow']} is in use (by another MLflow?): stop it or pass --mlflow-port"
    )
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


# --- bikecount up --airflow: the DAGs under Airflow's own scheduler ----------------------------

AIRFLOW_RUN_TIMEOUT = 240
PIPELINE_DAY = "2020-11-20"  # in the current data set of ``home``


def airflow_call(
    airflow: str, method: str, path: str, payload: dict[str, object] | None = None
) -> dict:
    answer = httpx.request(method, f"{airflow}/api/v2{path}", json=payload, timeout=30)
    assert answer.status_code < 300, answer.text
    return answer.json()


def wait_for_dags(airflow: str, dag_ids: set[str], output: Path) -> None:
    helpers.wait_until(
        lambda: {d["dag_id"] for d in airflow_call(airflow, "GET", "/dags")["dags"]} >= dag_ids,
        AIRFLOW_RUN_TIMEOUT,
        f"DAGs {sorted(dag_ids)} parsed",
        lambda: output.read_text()[-5000:],
        interval=1,
    )


def run_dag_to_the_end(airflow: str, dag_id: str, conf: dict[str, object], home: Path) -> dict:
    """Trigger ``dag_id`` with ``conf`` through the REST API; wait for the run to finish."""
    run = airflow_call(
        airflow, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
    )
    path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"

    def finished() -> bool:
        run.update(airflow_call(airflow, "GET", path))
        return run["state"] in ("success", "failed")

    helpers.wait_until(
        finished,
        AIRFLOW_RUN_TIMEOUT,
        f"{dag_id} finished",
        lambda: f"still {run['state']}\n" + (home / "logs" / "airflow.log").read_text()[-5000:],
        interval=2,
    )
    return run


def test_up_with_airflow_runs_the_dags_on_its_scheduler(
    home: Path, ports: dict[str, int], no_leftovers: None
) -> None:
    airflow_port = helpers.free_port()
    airflow = f"http://127.0.0.1:{airflow_port}"
    current = read_records(home / "data" / "current_data.csv")
    output = home / "up-airflow.txt"
    with serving(current) as opendata, output.open("wb") as sink:
        env = stack_env(ports)
        # No retries: the scheduled run that unpausing starts asks Open Data for yesterday,
        # which the stand-in does not have; it fails at once instead of retrying for minutes.
        env.update(
            BIKECOUNT_AIRFLOW_PORT=str(airflow_port),
            BIKECOUNT_OPEN_DATA_URL=opendata.url,
            BIKECOUNT_PIPELINE_RETRIES="0",
        )
        up = subprocess.Popen(
            [str(BIKECOUNT), "up", "--airflow"], cwd=home, env=env, stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            api = f"http://127.0.0.1:{ports['api']}"
            wait_until_healthy(up, [f"{api}/health", f"{airflow}/api/v2/monitor/health"], output)
            dag_ids = {"bikecount_daily_ingest", "bikecount_daily_predict"}
            wait_for_dags(airflow, dag_ids, output)
            for dag_id in dag_ids:
                airflow_call(airflow, "PATCH", f"/dags/{dag_id}", {"is_paused": False})

            # The first start filled the store with generated days of every Paris counter; the
            # stand-in Open Data has this home's fewer counters, a shrink that must be forced.
            ingested = run_dag_to_the_end(
                airflow, "bikecount_daily_ingest", {"day": PIPELINE_DAY, "force": True}, home
            )
            assert ingested["state"] == "success", output.read_text()[-5000:]
            predicted = run_dag_to_the_end(
                airflow, "bikecount_daily_predict", {"day": PIPELINE_DAY}, home
            )
            assert predicted["state"] == "success", output.read_text()[-5000:]
            family = tree(up.pid)
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=STOP_TIMEOUT) == 0
        finally:
            stop(up)
    assert not still_running(family), [p.cmdline() for p in still_running(family)]

    # The tasks wrote where the stack runs: the day from Open Data, tomorrow's forecast.
    engine = open_store(f"sqlite:///{home / 'pipeline.db'}")
    stored = read_counts(engine)
    day = pd.Timestamp(PIPELINE_DAY).date()
    assert set(stored["day"]) >= {day} and (stored["day"] == day).sum() == 8 * 24
    assert any(PIPELINE_DAY in query["where"][0] for query in opendata.requests if "where" in query)
    forecast = read_table(engine, predictions_table)
    # Tomorrow for every stored counter (the first start's generated ones included), by each
    # version that forecast it: the DAG's, and the background's full model when it took over
    # before the DAG ran (it forecasts the stored days again).
    tomorrow = forecast[forecast["day"] == day + pd.Timedelta(days=1)]
    rows_by_version = tomorrow.groupby("model_version").size()
    assert not rows_by_version.empty
    assert (rows_by_version == len(known_counters(engine)) * 24).all(), rows_by_version
    text = output.read_text()
    assert f"Airflow UI       {airflow}" in text
    # Airflow's own output is in its log (the console shows only its warnings and errors).
    assert (home / "logs" / "airflow.log").stat().st_size > 0
    assert "SIGINT: every service stopped." in text
