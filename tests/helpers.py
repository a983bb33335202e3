"""Factories of test data: small generated record sets, hand-made records, spelling converters.

Every data set comes from the project's own generator (``bikecount.data.synthetic``) or is built
here by hand; no test reads files from outside its temporary folders.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from bikecount.config import Settings
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.pipeline.ingest import ingest
from bikecount.pipeline.predict import day_grid, score_day
from bikecount.pipeline.store import read_counts, replace_day_counts, replace_predictions
from bikecount.pipeline.store_engine import open_store
from bikecount.records import COORDINATES, COUNT, COUNTER, PARIS_TZ, TIMESTAMP, parse_records

# The repository's root: the files beside the package that tests check (compose, deploy/, dags/).
REPO = Path(__file__).resolve().parents[1]

# 6 counters x 2 months, spanning the spring DST night (2021-03-28): a few seconds to build.
SMALL_CONFIG = SynthConfig(start="2021-03-01", months=2, n_counters=6, seed=11)
# 8 counters x 3 months with weekday public holidays (2020-11-11, 2020-12-25) for model tests.
MODEL_CONFIG = SynthConfig(start="2020-10-01", months=3, n_counters=8, seed=5)

# One snake_case spelling of each column the contract needs (API clients send these).
EXPORT_TO_SNAKE = {
    COUNTER: "nom_du_compteur",
    TIMESTAMP: "date_et_heure_de_comptage",
    COORDINATES: "coordonnées_géographiques",
    COUNT: "comptage_horaire",
    "Identifiant du compteur": "identifiant_du_compteur",
    "Identifiant du site de comptage": "identifiant_du_site_de_comptage",
    "Nom du site de comptage": "nom_du_site_de_comptage",
}

# A place inside Paris (Hôtel de Ville) for hand-made records.
PARIS_CENTRE = (48.8566, 2.3522)


def generate_raw(config: SynthConfig = SMALL_CONFIG) -> pd.DataFrame:
    """Raw records in the export's French spelling, from the project's generator."""
    return generate_records(config)


def generate_canonical(config: SynthConfig = SMALL_CONFIG) -> pd.DataFrame:
    """Canonical records (``counter, timestamp, lat, lon, count``) of a generated data set."""
    return parse_records(generate_records(config), require_count=True).frame


def to_snake_case(
    raw: pd.DataFrame, coordinates: str = "coordonnées_géographiques"
) -> pd.DataFrame:
    """The same records with the API clients' snake_case column names.

    Args:
        raw: records in the export's French spelling.
        coordinates: which snake_case spelling of the coordinates column to use (with or
            without accents).
    """
    renames = {**EXPORT_TO_SNAKE, COORDINATES: coordinates}
    return raw.rename(columns={col: renames[col] for col in raw.columns if col in renames})


def raw_records(rows: Iterable[dict[str, object]]) -> pd.DataFrame:
    """Raw records in the export spelling from dicts; missing fields take valid defaults.

    Defaults: counter ``"10 rue Exemple N-S"``, ``2021-06-01T08:00:00+02:00``, the centre of
    Paris and a count of ``"12"``; values are strings, as a CSV file gives them.
    """
    defaults = {
        COUNTER: "10 rue Exemple N-S",
        TIMESTAMP: "2021-06-01T08:00:00+02:00",
        COORDINATES: f"{PARIS_CENTRE[0]},{PARIS_CENTRE[1]}",
        COUNT: "12",
    }
    return pd.DataFrame([{**defaults, **row} for row in rows], columns=list(defaults))


def canonical_records(
    counters: Sequence[tuple[str, float, float]], local_times: Sequence[str]
) -> pd.DataFrame:
    """Canonical records of every (counter, local time): a grid for asking a model questions.

    Args:
        counters: ``(name, lat, lon)`` of each counter.
        local_times: naive Europe/Paris wall-clock times such as ``"2020-11-17 08:00"``.

    Returns:
        Counter-major rows with ``count`` NaN (unknown, as at prediction time).
    """
    stamps = pd.DatetimeIndex(pd.to_datetime(list(local_times))).tz_localize(PARIS_TZ)
    rows = [
        {"counter": name, "timestamp": ts, "lat": lat, "lon": lon, "count": np.nan}
        for name, lat, lon in counters
        for ts in stamps
    ]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = frame["timestamp"].astype(f"datetime64[ns, {PARIS_TZ}]")
    return frame


def counter_places(frame: pd.DataFrame) -> list[tuple[str, float, float]]:
    """``(name, lat, lon)`` of each counter of canonical records, sorted by name."""
    places = frame.groupby("counter")[["lat", "lon"]].first()
    return [(str(name), float(row.lat), float(row.lon)) for name, row in places.iterrows()]


def fill_dashboard_store(settings: Settings, days: Sequence[date], coming_day: date) -> None:
    """A pipeline store as the daily loop leaves it, without an API: generated counts of ``days``
    (through the synthetic ingest), and forecasts of those days and of ``coming_day`` by two
    versions (v1 a fixed fraction of each counter's mean, v2 the counts plus 3), scored by the
    pipeline's own ``score_day``.

    The forecasts are made up (no model is asked) so that the tests know what every figure must
    be; everything is written and read by the pipeline's own functions.
    """
    engine = open_store(settings.pipeline_db_url)
    for day in days:
        ingest(settings, day, "synthetic")
    counts = read_counts(engine, min(days), max(days))
    level = counts.groupby("counter")["count"].mean()
    counters = counts.drop_duplicates("counter")[["counter", "lat", "lon"]].reset_index(drop=True)
    model_type = settings.pipeline_model_type
    for day in [*days, coming_day]:
        grid = day_grid(counters, day)
        first = grid.assign(prediction=grid["counter"].map(level) * 0.8, model_version=1)
        replace_predictions(engine, day, first, model_type)
        day_counts = counts[counts["day"] == day][["counter", "timestamp", "count"]]
        second = grid.merge(day_counts, on=["counter", "timestamp"], how="left")
        second["prediction"] = second.pop("count").fillna(10.0) + 3.0
        replace_predictions(engine, day, second.assign(model_version=2), model_type)
        score_day(settings, day)


# 6 counters (enough for the city factor) from seven weeks before HEALTH_DAY, a Wednesday.
HEALTH_CONFIG = SynthConfig(start="2021-01-04", months=3, n_counters=6, seed=3)
HEALTH_DAY = date(2021, 3, 24)


def fill_health_store(
    settings: Settings, frame: pd.DataFrame, broken: str | None = None, through: int = 1
) -> None:
    """Store the days of canonical ``frame`` that a health check of ``HEALTH_DAY`` reads, and
    ``through`` days after it; with ``broken``, that counter counts zeros on ``HEALTH_DAY`` from
    8:00 to midnight (an outage that is over the day after)."""
    engine = open_store(settings.pipeline_db_url)
    first = HEALTH_DAY - timedelta(days=6 * 7 + 7)
    days = frame["timestamp"].dt.date
    frame = frame[(days >= first) & (days <= HEALTH_DAY + timedelta(days=through))].copy()
    if broken is not None:
        out = pd.Timestamp(HEALTH_DAY.isoformat()).tz_localize(PARIS_TZ)
        rows = (frame["counter"] == broken) & (frame["timestamp"] >= out + pd.Timedelta(hours=8))
        rows &= frame["timestamp"] < out + pd.Timedelta(days=1)
        frame.loc[rows, "count"] = 0.0
    for day, rows in frame.groupby(frame["timestamp"].dt.date):
        replace_day_counts(engine, day, rows)


def shifted_records(current: pd.DataFrame, rows: int = 300) -> list[dict[str, Any]]:
    """Current records moved to 3 am on June Sundays at one counter, with ten times the counts:
    a drift in hour, weekday, month, counter and target."""
    frame = current.head(rows).copy()
    first = frame.iloc[0]
    for column in ("Nom du compteur", "Coordonnées géographiques"):
        frame[column] = first[column]
    days = pd.date_range("2021-06-06", periods=4, freq="7D")
    frame["Date et heure de comptage"] = [
        f"{days[i % len(days)].date()}T03:00:00+02:00" for i in range(len(frame))
    ]
    frame["Comptage horaire"] = pd.to_numeric(frame["Comptage horaire"]) * 10
    return json.loads(frame.to_json(orient="records"))


def local_settings(root: Path, **overrides: object) -> Settings:
    """Settings whose every folder and store is under ``root``."""
    return Settings(
        _env_file=None,
        data_dir=root / "data",
        mlruns_dir=root / "mlruns",
        artifacts_dir=root / "artifacts",
        logs_dir=root / "logs",
        reports_dir=root / "reports",
        pipeline_db_url=f"sqlite:///{root / 'pipeline.db'}",
        **overrides,
    )


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    details: Callable[[], str] = lambda: "",
    interval: float = 0.5,
) -> float:
    """Call ``condition`` until it is true; the seconds it took. How every test waits for
    something to happen (a process to start or end, a server to answer, a scrape, a page).

    An HTTP error counts as "not yet": a server that is starting refuses connections. After
    ``timeout`` seconds the test fails, naming ``what`` and adding ``details()`` (a log's tail,
    the last value seen). ``interval`` is only how often to look.
    """
    started = time.monotonic()
    while True:
        with suppress(httpx.HTTPError):
            if condition():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"not {what} within {timeout:.0f} s\n{details()}")
        time.sleep(interval)


def closed_port_url() -> str:
    """A URL on a loopback port where nothing listens (the port was just free)."""
    return f"http://127.0.0.1:{free_port()}"


def free_port() -> int:
    """A loopback port free right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (held together, so none is repeated)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ignores_signal(process: psutil.Process, signum: int) -> bool:
    """Whether ``process`` has set signal ``signum`` to be ignored (its SigIgn mask in /proc);
    False once it has ended."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except FileNotFoundError:
        return False
    [mask] = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
    return bool(int(mask, 16) & (1 << (signum - 1)))


def fit_processes() -> list[psutil.Process]:
    """The processes this one's fork server forked to fit models (``bikecount.isolated_fit``):
    fits of ``train()`` called here, or of an API served from a thread here."""
    found = []
    for child in psutil.Process().children():
        with suppress(psutil.NoSuchProcess):
            if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                found.extend(child.children())
    return found
