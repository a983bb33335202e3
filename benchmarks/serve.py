"""Serving benchmark: ``/predict`` latency over HTTP per model type, next to the server's floor.

In a working directory of its own (temporary unless ``--workdir`` is given), the script generates
data, starts a real MLflow server and the RegModel API (uvicorn, one worker) on free loopback
ports with the stack's own service definitions (``bikecount.stack.services``: the command line
and environment ``bikecount up`` uses), trains one model per requested type on the reference
data with default (full) settings, then measures, per model type:

- over HTTP, requests of 1, 24, 1,248 (a day of 52 counters) and 10,000 records sent one after
  the other: p50 and p99 of each size;
- the server's floor in the same run: the p50 of a request it answers 404, sent alternately
  with the one-record requests (same moment, same load), and the one-record p50 as a multiple
  of it;
- in-process, on the model as the API loads it: the median time to read the records
  (``valid_frame``), to make the features (the model's feature steps, as serving calls them), and
  to predict from them;
- requests per second with ``--concurrency`` clients sending one-record requests at once;
- the server's CPU time (user + system, from its process's counters) per 404 and per
  one-record request: unlike the latencies, it does not grow with the machine's load, so it
  compares runs on a shared machine.

Figures are printed, never asserted. Every process started is stopped at the end, on Ctrl-C too.
With ``--workdir DIR --reuse``, a second run reuses the data and models a first run left there.

    python benchmarks/serve.py [--models rf gbm nn rf_class] [--requests N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np
import psutil
from threadpoolctl import threadpool_limits

from bikecount.api.routes.predict import valid_frame
from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.inference import load_for_serving, predict_records
from bikecount.lean_predict import model_features
from bikecount.models import MODEL_TYPES, get_spec
from bikecount.records import COUNT, SNAKE_TO_EXPORT
from bikecount.registry import Registry, bound_mlflow_requests
from bikecount.stack import check_ports
from bikecount.stack.processes import ProcessManager, RunningService, handling_stop_signals
from bikecount.stack.services import ServiceSpec, StackOptions, build_services
from bikecount.train import TrainRequest, train

HOST = "127.0.0.1"
HEALTH_TIMEOUT_SECONDS = 180.0
REQUEST_TIMEOUT_SECONDS = 300.0  # the first request loads the model from MLflow
WARMUP_REQUESTS = 20
# 1 record (a dashboard's counter), 24 (a journey planner's day), 1,248 (a day of 52 counters).
SIZES = (1, 24, 1_248, 10_000)
SMALL_SIZES = (1, 24)
TARGETS = (
    "rf, 1 record: p50 <= 5 ms and <= 4x the 404 floor where the floor allows, p99 <= 15 ms; "
    "10,000 records <= 0.5 s"
)
MISSING_PATH = "/no-such-page"

Record = dict[str, Any]


@dataclass
class Latency:
    """p50 and p99 of some requests, in milliseconds."""

    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        p50, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 99])
        return cls(float(p50), float(p99))


@dataclass
class Split:
    """In-process medians (ms): reading the records, making the features, predicting."""

    parse_ms: float
    features_ms: float
    model_ms: float


@dataclass
class Figures:
    """What was measured for one model type."""

    model_type: str
    version: int
    floor: Latency
    http: dict[int, Latency]
    in_process: dict[int, Split]
    requests_per_second: float
    load_p50_ms: float
    cpu_floor_ms: float
    cpu_one_ms: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument(
        "--requests", type=int, default=200, help="sequential requests of 1 and of 24 records"
    )
    parser.add_argument(
        "--batch-requests",
        type=int,
        default=20,
        help="sequential requests of 1,248 and of 10,000 records",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse the data and the champions a previous run left there",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="clients under load")
    parser.add_argument(
        "--load-requests", type=int, default=2_000, help="bound on requests under load"
    )
    parser.add_argument("--load-seconds", type=float, default=20.0, help="bound on time under load")
    parser.add_argument("--months", type=int, default=13, help="months of generated data")
    parser.add_argument("--counters", type=int, default=52, help="generated counters")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="use and keep this folder (default: temporary)"
    )
    parser.add_argument(
        "--ports",
        type=int,
        nargs=2,
        metavar=("MLFLOW", "API"),
        default=None,
        help="the servers' ports (default: free ones), for a machine whose ports are shared out",
    )
    return parser.parse_args(argv)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def isolate_environment() -> None:
    """Forget the caller's bikecount and MLflow configuration: the benchmark brings its own."""
    for key in [key for key in os.environ if key.startswith(("BIKECOUNT_", "MLFLOW_"))]:
        del os.environ[key]


def workdir_settings(root: Path) -> Settings:
    """Settings whose data, MLflow store and artifacts all live under ``root``."""
    return Settings(
        _env_file=None,
        data_dir=root / "data",
        mlruns_dir=root / "mlruns_dev",
        artifacts_dir=root / "mlflow_artifacts",
        logs_dir=root / "logs",
    )


def with_workdir_env(spec: ServiceSpec, settings: Settings) -> ServiceSpec:
    """The API's service with the benchmark's folders added to its environment."""
    env = {
        **spec.env,
        "BIKECOUNT_DATA_DIR": str(settings.data_dir),
        "BIKECOUNT_MLRUNS_DIR": str(settings.mlruns_dir),
        "BIKECOUNT_ARTIFACTS_DIR": str(settings.artifacts_dir),
    }
    return dataclasses.replace(spec, env=env)


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def working_directory(path: Path | None) -> Iterator[Path]:
    """Work in ``path`` (kept, and reused if it exists), or in a temporary folder (removed), as
    the current directory: the servers started there read no ``.env`` of the caller's."""
    previous = Path.cwd()
    with ExitStack() as stack:
        if path is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bikecount-serve-")))
        else:
            root = path.resolve()
            root.mkdir(parents=True, exist_ok=True)
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous)


def snake_records(settings: Settings) -> list[Record]:
    """Rows of current_data.csv as API records in snake_case (no count, no empty values)."""
    raw = read_records(settings.dataset_path("current"))
    export_to_snake: dict[str, str] = {}
    for snake, export in SNAKE_TO_EXPORT.items():
        export_to_snake.setdefault(export, snake)
    columns = [c for c in raw.columns if c in export_to_snake and c != COUNT]
    sample = raw.sample(n=min(len(raw), 20_000), random_state=0)[columns]
    records = []
    for row in sample.to_dict(orient="records"):
        records.append(
            {
                export_to_snake[key]: value
                for key, value in row.items()
                if not (isinstance(value, float) and math.isnan(value))
            }
        )
    return records


def train_models(settings: Settings, model_types: Sequence[str]) -> dict[str, str]:
    """Train one model per type on the reference data, default settings.

    Returns:
        For each type that failed to train, why (it is then left out of the measurements).
    """
    failures = {}
    registry = Registry(settings)
    for model_type in model_types:
        started = time.perf_counter()
        try:
            result = train(TrainRequest(model_type=model_type), settings, registry)
        except Exception as exc:  # one broken model type must not stop the others' figures
            failures[model_type] = f"{type(exc).__name__}: {exc}"
            print(f"  {model_type} failed to train: {failures[model_type]}", flush=True)
            continue
        print(
            f"  trained {model_type} v{result.version} in {time.perf_counter() - started:.0f} s "
            f"on {result.rows_train:,} rows (champion: {result.champion})",
            flush=True,
        )
    return failures


def post_predict(client: httpx.Client, records: list[Record], model_type: str) -> dict[str, Any]:
    response = client.post("/predict", json={"records": records, "model_type": model_type})
    if response.status_code != 200:
        raise RuntimeError(f"/predict {model_type}: {response.status_code} {response.text[:500]}")
    body = response.json()
    if body["count"] != len(records):
        raise RuntimeError(f"/predict {model_type}: {body['count']} predictions for {len(records)}")
    return body


def timed_predict(client: httpx.Client, records: list[Record], model_type: str) -> float:
    started = time.perf_counter()
    post_predict(client, records, model_type)
    return time.perf_counter() - started


def batch_of(records: list[Record], size: int, offset: int) -> list[Record]:
    """``size`` records starting at ``offset``, wrapping around."""
    return [records[(offset + i) % len(records)] for i in range(size)]


def measure_size(
    client: httpx.Client, records: list[Record], model_type: str, size: int, n: int
) -> list[float]:
    """Times (s) of ``n`` requests of ``size`` records, sent one after the other."""
    return [timed_predict(client, batch_of(records, size, i * size), model_type) for i in range(n)]


def measure_floor_and_one(
    client: httpx.Client, records: list[Record], model_type: str, n: int
) -> tuple[list[float], list[float]]:
    """Times (s) of ``n`` requests answered 404 and ``n`` one-record requests, sent alternately,
    so that both meet the same moment's load."""
    floor, one = [], []
    for i in range(n):
        started = time.perf_counter()
        response = client.get(MISSING_PATH)
        floor.append(time.perf_counter() - started)
        if response.status_code != 404:
            raise RuntimeError(f"{MISSING_PATH}: {response.status_code}, not 404")
        one.append(timed_predict(client, [records[i % len(records)]], model_type))
    return floor, one


def server_cpu_seconds(pid: int) -> float:
    """CPU time (s, user + system) the server's process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def measure_server_cpu(
    client: httpx.Client, records: list[Record], model_type: str, pid: int, n: int
) -> tuple[float, float]:
    """The server's CPU time (ms) per request: of ``n`` requests answered 404, then of ``n``
    one-record requests."""
    before = server_cpu_seconds(pid)
    for _ in range(n):
        client.get(MISSING_PATH)
    middle = server_cpu_seconds(pid)
    for i in range(n):
        post_predict(client, [records[i % len(records)]], model_type)
    after = server_cpu_seconds(pid)
    return (middle - before) / n * 1e3, (after - middle) / n * 1e3


def median_seconds(action: Callable[[], object], n: int) -> float:
    """Median time (s) of ``n`` calls of ``action``, after one unmeasured call."""
    action()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_in_process(
    registry: Registry, model_type: str, version: int, records: list[Record], n: int
) -> dict[int, Split]:
    """Per size, the median time to read the records, make the features and predict, in this
    process, with the model as the API loads it."""
    with threadpool_limits(limits=1, user_api="openmp"):  # as the API's OMP_NUM_THREADS=1
        return split_stages(load_for_serving(registry, model_type, version), model_type, records, n)


def split_stages(model: Any, model_type: str, records: list[Record], n: int) -> dict[int, Split]:
    """Per size, the medians of the stages, with ``model`` as loaded (see measure_in_process)."""
    task = get_spec(model_type).task
    splits = {}
    for size in SIZES:
        batch = batch_of(records, size, 0)
        repeats = n if size in SMALL_SIZES else max(3, n // 20)
        frame = valid_frame(batch)
        parse = median_seconds(partial(valid_frame, batch), repeats)
        # The features as serving makes them: the model's own steps, called as the lean path
        # calls them (lean_predict), not through the Pipeline's per-call wrappers.
        features = median_seconds(partial(model_features, model, frame), repeats)
        total = median_seconds(partial(predict_records, model, task, frame), repeats)
        splits[size] = Split(parse * 1e3, features * 1e3, max(total - features, 0.0) * 1e3)
    return splits


def measure_load(
    url: str, records: list[Record], model_type: str, clients: int, limit: int, seconds: float
) -> tuple[float, float]:
    """Requests per second and p50 latency (ms) with ``clients`` threads sending one-record
    requests, until ``limit`` requests have been sent or ``seconds`` have passed."""
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def next_index() -> int | None:
        with lock:
            if sent[0] >= limit or time.perf_counter() > deadline or errors:
                return None
            sent[0] += 1
            return sent[0]

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False) as c:
            while (index := next_index()) is not None:
                try:
                    elapsed = timed_predict(c, [records[index % len(records)]], model_type)
                except Exception as exc:  # reported once the threads are done
                    errors.append(exc)
                    return
                with lock:
                    latencies.append(elapsed * 1e3)

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"under load: {errors[0]}") from errors[0]
    return len(latencies) / elapsed, float(np.median(latencies))


def measure_model(
    url: str,
    pid: int,
    registry: Registry,
    records: list[Record],
    model_type: str,
    args: argparse.Namespace,
) -> Figures:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False) as client:
        version = post_predict(client, records[:1], model_type)["model_version"]
        measure_size(client, records, model_type, 1, WARMUP_REQUESTS)
        floor, one = measure_floor_and_one(client, records, model_type, args.requests)
        http = {1: Latency.of(one)}
        for size in SIZES[1:]:
            n = args.requests if size in SMALL_SIZES else args.batch_requests
            http[size] = Latency.of(measure_size(client, records, model_type, size, n))
        cpu_floor, cpu_one = measure_server_cpu(client, records, model_type, pid, args.requests)
    in_process = measure_in_process(registry, model_type, version, records, args.requests)
    rate, load_p50 = measure_load(
        url, records, model_type, args.concurrency, args.load_requests, args.load_seconds
    )
    return Figures(
        model_type,
        version,
        Latency.of(floor),
        http,
        in_process,
        rate,
        load_p50,
        cpu_floor,
        cpu_one,
    )


def print_rows(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table (docs/benchmarks.md takes it as printed)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")


def print_tables(figures: list[Figures], concurrency: int) -> None:
    headers = ["model", "404 floor p50", "1 rec p50 (x floor)", "1 rec p99"]
    for size in SIZES[1:]:
        headers += [f"{size:,} rec p50", f"{size:,} rec p99"]
    headers += [f"req/s at {concurrency}", f"p50 at {concurrency}"]
    rows = []
    for f in figures:
        one = f.http[1]
        row = [
            f"{f.model_type} v{f.version}",
            f"{f.floor.p50_ms:.2f}",
            f"{one.p50_ms:.2f} ({one.p50_ms / f.floor.p50_ms:.1f}x)",
            f"{one.p99_ms:.2f}",
        ]
        for size in SIZES[1:]:
            row += [f"{f.http[size].p50_ms:.1f}", f"{f.http[size].p99_ms:.1f}"]
        row += [f"{f.requests_per_second:.0f}", f"{f.load_p50_ms:.1f}"]
        rows.append(row)
    print("Over HTTP, milliseconds:")
    print()
    print_rows(headers, rows)
    print()
    print("In-process medians, milliseconds (model as the API loads it):")
    print()
    split_rows = [
        [
            f.model_type,
            f"{size:,}",
            f"{split.parse_ms:.2f}",
            f"{split.features_ms:.2f}",
            f"{split.model_ms:.2f}",
            f"{split.parse_ms + split.features_ms + split.model_ms:.2f}",
        ]
        for f in figures
        for size, split in f.in_process.items()
    ]
    print_rows(["model", "records", "parse", "features", "model", "total"], split_rows)
    print()
    print(
        "The server's CPU time per request, milliseconds (user + system, its process's counters):"
    )
    print()
    cpu_rows = [
        [
            f.model_type,
            f"{f.cpu_floor_ms:.2f}",
            f"{f.cpu_one_ms:.2f}",
            f"{f.cpu_one_ms / f.cpu_floor_ms:.1f}x" if f.cpu_floor_ms > 0 else "-",
        ]
        for f in figures
    ]
    print_rows(["model", "404", "1 record", "1 record (x 404)"], cpu_rows)


def plan_services(
    settings: Settings, ports: Sequence[int] | None = None
) -> tuple[ServiceSpec, ServiceSpec, Settings]:
    """MLflow and the API on ``ports`` (default: free ones), the API seeing the working folder;
    the settings of the benchmark's own process, pointed at that MLflow server."""
    mlflow_port, api_port = ports if ports is not None else (free_port(), free_port())
    listen = {"host": HOST, "mlflow_port": mlflow_port, "api_port": api_port}
    mlflow_spec, api_spec = build_services(
        settings.model_copy(update=listen), StackOptions(dashboard=False)
    )
    api_spec = with_workdir_env(api_spec, settings)
    check_ports([mlflow_spec, api_spec])
    return (
        mlflow_spec,
        api_spec,
        settings.model_copy(update={"mlflow_tracking_uri": mlflow_spec.url}),
    )


def start_service(manager: ProcessManager, spec: ServiceSpec) -> RunningService:
    service = manager.start(spec)
    manager.wait_healthy(service, HEALTH_TIMEOUT_SECONDS)
    print(f"  {spec.name} healthy at {spec.url} (pid {service.process.pid})", flush=True)
    return service


def prepare_data(args: argparse.Namespace, settings: Settings) -> None:
    """Generate the data sets, unless ``--reuse`` finds them in the working folder."""
    if args.reuse and settings.dataset_path("current").is_file():
        print(f"reusing the data sets in {settings.data_dir}", flush=True)
        return
    print(f"generating {args.months} months x {args.counters} counters", flush=True)
    config = SynthConfig(months=args.months, n_counters=args.counters)
    written = write_datasets(generate_records(config), settings)
    print("  " + ", ".join(f"{name}: {len(frame):,} rows" for name, (_, frame) in written.items()))


def to_train(args: argparse.Namespace, registry: Registry) -> list[str]:
    """The requested model types to train: all, or with ``--reuse`` those without a champion."""
    if not args.reuse:
        return list(args.models)
    return [model_type for model_type in args.models if registry.champion(model_type) is None]


def run(args: argparse.Namespace, root: Path) -> tuple[list[Figures], dict[str, str]]:
    """Data, MLflow, training, the API, then the measurements; every process stopped on exit."""
    settings = workdir_settings(root)
    print(f"working in {root}", flush=True)
    prepare_data(args, settings)
    mlflow_spec, api_spec, settings = plan_services(settings, args.ports)
    bound_mlflow_requests(settings)  # before the process manager's threads start
    with handling_stop_signals(_stop_on_signal), ProcessManager(settings.logs_dir) as manager:
        start_service(manager, mlflow_spec)
        registry = Registry(settings)
        training = to_train(args, registry)
        print(f"training {', '.join(training) or 'nothing'} (default settings)", flush=True)
        failures = train_models(settings, training)
        api = start_service(manager, api_spec)
        records = snake_records(settings)
        results = []
        for model_type in [m for m in args.models if m not in failures]:
            print(f"measuring {model_type}", flush=True)
            results.append(
                measure_model(api_spec.url, api.process.pid, registry, records, model_type, args)
            )
        return results, failures


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    isolate_environment()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # as the API sets it
    cpus = os.cpu_count()
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    try:
        with working_directory(args.workdir) as root:
            results, failures = run(args, root)
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}): every process stopped", file=sys.stderr)
        raise SystemExit(130) from None
    load_at_end = os.getloadavg()
    print()
    print(
        f"machine: {cpus} CPUs; load average (1, 5, 15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in load_at_start)}, at end "
        f"{', '.join(f'{x:.2f}' for x in load_at_end)}; total {time.perf_counter() - started:.0f} s"
    )
    print(
        f"data: {args.months} months x {args.counters} counters (generated); "
        f"{args.requests} sequential requests of 1 record (each after one answered 404) and of "
        f"24, {args.batch_requests} of 1,248 and of 10,000, after {WARMUP_REQUESTS} warm-up; "
        f"load: {args.concurrency} clients, at most {args.load_requests} requests "
        f"or {args.load_seconds:.0f} s"
    )
    print(f"targets: {TARGETS}")
    print()
    print_tables(results, args.concurrency)
    for model_type, reason in failures.items():
        print(f"{model_type}: not measured, training failed ({reason})")


if __name__ == "__main__":
    main()
