"""Serving benchmark: ``/predict`` latency and throughput over HTTP, per model type.

In a working directory of its own (temporary unless ``--workdir`` is given), the script generates
data, starts a real MLflow server and the RegModel API (uvicorn, one worker) on free loopback
ports with the stack's own service definitions, trains one model per requested type on the
reference data with default (full) settings, then measures over HTTP:

- the latency of one-record requests, sent one after the other (p50, p90, p99);
- the time of one request with 1,000 and with 10,000 records (median of 3);
- requests per second with ``--concurrency`` clients sending one-record requests at once.

Figures are printed, never asserted. Every process started is stopped at the end, on Ctrl-C too.

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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np

from bikecount.config import Settings
from bikecount.data.io import read_records
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.models import MODEL_TYPES
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
BATCH_SIZES = (1_000, 10_000)
BATCH_REPEATS = 3
TARGETS = "rf, 1 record: p50 < 10 ms and p99 < 30 ms; 10,000 records: < 1 s"

Record = dict[str, Any]


@dataclass
class Figures:
    """What was measured for one model type (latencies in ms, batch times in s)."""

    model_type: str
    version: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    batch_seconds: dict[int, float]
    requests_per_second: float
    load_p50_ms: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument("--requests", type=int, default=200, help="sequential 1-record requests")
    parser.add_argument("--concurrency", type=int, default=8, help="clients under load")
    parser.add_argument(
        "--load-requests", type=int, default=2_000, help="bound on requests under load"
    )
    parser.add_argument("--load-seconds", type=float, default=20.0, help="bound on time under load")
    parser.add_argument("--months", type=int, default=13, help="months of generated data")
    parser.add_argument("--counters", type=int, default=60, help="generated counters")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="use and keep this folder (default: temporary)"
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


def measure_sequential(
    client: httpx.Client, records: list[Record], model_type: str, n: int
) -> np.ndarray:
    """Latencies (ms) of ``n`` one-record requests sent one after the other."""
    return np.array(
        [timed_predict(client, [records[i % len(records)]], model_type) * 1e3 for i in range(n)]
    )


def measure_batch(client: httpx.Client, records: list[Record], model_type: str, size: int) -> float:
    """Median time (s) of one request with ``size`` records."""
    batch = [records[i % len(records)] for i in range(size)]
    return statistics.median(timed_predict(client, batch, model_type) for _ in range(BATCH_REPEATS))


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
    url: str, records: list[Record], model_type: str, args: argparse.Namespace
) -> Figures:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS, trust_env=False) as client:
        version = post_predict(client, records[:1], model_type)["model_version"]
        measure_sequential(client, records, model_type, WARMUP_REQUESTS)
        latencies = measure_sequential(client, records, model_type, args.requests)
        batches = {size: measure_batch(client, records, model_type, size) for size in BATCH_SIZES}
    rate, load_p50 = measure_load(
        url, records, model_type, args.concurrency, args.load_requests, args.load_seconds
    )
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return Figures(model_type, version, p50, p90, p99, batches, rate, load_p50)


def print_table(figures: list[Figures], concurrency: int) -> None:
    headers = [
        "model",
        "version",
        "p50 1-rec ms",
        "p90 1-rec ms",
        "p99 1-rec ms",
        "1k records s",
        "10k records s",
        f"req/s at {concurrency}",
        f"p50 at {concurrency} ms",
    ]
    rows = [
        [
            f.model_type,
            str(f.version),
            f"{f.p50_ms:.1f}",
            f"{f.p90_ms:.1f}",
            f"{f.p99_ms:.1f}",
            f"{f.batch_seconds[1_000]:.3f}",
            f"{f.batch_seconds[10_000]:.3f}",
            f"{f.requests_per_second:.1f}",
            f"{f.load_p50_ms:.1f}",
        ]
        for f in figures
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def plan_services(settings: Settings) -> tuple[ServiceSpec, ServiceSpec, Settings]:
    """MLflow and the API on free ports, the API seeing the working folder; the settings of
    the benchmark's own process, pointed at that MLflow server."""
    listen = {"host": HOST, "mlflow_port": free_port(), "api_port": free_port()}
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


def run(args: argparse.Namespace, root: Path) -> tuple[list[Figures], dict[str, str]]:
    """Data, MLflow, training, the API, then the measurements; every process stopped on exit."""
    settings = workdir_settings(root)
    print(f"generating {args.months} months x {args.counters} counters into {root}", flush=True)
    config = SynthConfig(months=args.months, n_counters=args.counters)
    written = write_datasets(generate_records(config), settings)
    print("  " + ", ".join(f"{name}: {len(frame):,} rows" for name, (_, frame) in written.items()))
    mlflow_spec, api_spec, settings = plan_services(settings)
    bound_mlflow_requests(settings)  # before the process manager's threads start
    with handling_stop_signals(_stop_on_signal), ProcessManager(settings.logs_dir) as manager:
        start_service(manager, mlflow_spec)
        print(f"training {', '.join(args.models)} (default settings)", flush=True)
        failures = train_models(settings, args.models)
        start_service(manager, api_spec)
        records = snake_records(settings)
        results = []
        for model_type in [m for m in args.models if m not in failures]:
            print(f"measuring {model_type}", flush=True)
            results.append(measure_model(api_spec.url, records, model_type, args))
        return results, failures


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    isolate_environment()
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
        f"data: {args.months} months x {args.counters} counters; {args.requests} sequential "
        f"1-record requests after {WARMUP_REQUESTS} warm-up; batches median of {BATCH_REPEATS}; "
        f"load: {args.concurrency} clients, at most {args.load_requests} requests "
        f"or {args.load_seconds:.0f} s"
    )
    print(f"targets: {TARGETS}")
    print()
    print_table(results, args.concurrency)
    for model_type, reason in failures.items():
        print(f"{model_type}: not measured, training failed ({reason})")


if __name__ == "__main__":
    main()
