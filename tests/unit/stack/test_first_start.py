"""The first start (``bikecount.stack.first_start``), called directly on real parts: a local
SQLite MLflow store (no server), the project's generator and the real ``train()``.

What the bootstrap looks at, its errors (data that cannot be made, a registry that cannot be
asked), and three starts on one empty machine. The background work after it
(``bikecount.stack.background``: full models as the API's training jobs, the pipeline store
through the API) is in ``tests/integration/test_background_work.py`` and ``test_first_start.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import helpers
from bikecount.config import DATASET_FILES, Settings
from bikecount.data.prepare import write_datasets
from bikecount.models import MODEL_TYPES, parse_params
from bikecount.models.limits import TrainingCostError, estimate_training_cost
from bikecount.pipeline.ingest import SYNTHETIC, ingest
from bikecount.records import COORDINATES, COUNT, COUNTER, TIMESTAMP
from bikecount.registry import Registry, RegistryUnavailableError, VersionInfo
from bikecount.stack.background import (
    BackgroundWork,
    recent_days,
    store_is_empty,
    types_with_test_mode_champion,
)
from bikecount.stack.first_start import (
    BootstrapError,
    BootstrapHooks,
    BootstrapReport,
    bootstrap,
    data_missing,
    server_settings,
    types_without_champion,
)
from bikecount.stack.processes import StackError
from bikecount.train import TrainResult


@dataclass
class Recorder:
    """Records every bootstrap callback, and whether a stage came inside ``chatter``."""

    messages: list[str] = field(default_factory=list)
    training: list[list[str]] = field(default_factory=list)
    stages: list[tuple[str, str, bool]] = field(default_factory=list)
    trained: list[tuple[str, TrainResult | None, Exception | None]] = field(default_factory=list)
    chatters: int = 0
    inside_chatter: bool = False

    def hooks(self) -> BootstrapHooks:
        return BootstrapHooks(
            on_message=self.messages.append,
            on_training=lambda types: self.training.append(list(types)),
            on_stage=lambda model_type, stage: self.stages.append(
                (model_type, stage, self.inside_chatter)
            ),
            on_trained=lambda model_type, result, error: self.trained.append(
                (model_type, result, error)
            ),
            chatter=self.chatter,
        )

    @contextmanager
    def chatter(self) -> Iterator[None]:
        self.chatters += 1
        self.inside_chatter = True
        try:
            yield
        finally:
            self.inside_chatter = False

    def text(self) -> str:
        return "\n".join(self.messages)


def registry_on(settings: Settings, tracking_uri: str) -> Registry:
    """The stack's registry: its settings pointed at the MLflow server at ``tracking_uri``."""
    return Registry(server_settings(settings, tracking_uri))


def versions_by_type(registry: Registry) -> dict[str, list[VersionInfo]]:
    return {model_type: registry.list_versions(model_type) for model_type in MODEL_TYPES}


# --- What the bootstrap looks at -------------------------------------------------------------


@pytest.mark.parametrize("absent", [None, *DATASET_FILES])
def test_data_is_missing_while_any_of_the_three_sets_is(tmp_path: Path, absent: str) -> None:
    settings = helpers.local_settings(tmp_path)
    assert data_missing(settings)  # not even the folder
    settings.data_dir.mkdir()
    for name in DATASET_FILES:
        if name != absent:
            settings.dataset_path(name).write_text("a file\n")
    assert data_missing(settings) is (absent is not None)


def test_server_settings_point_at_the_server_and_keep_everything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    settings = helpers.local_settings(tmp_path, seed=7, mlflow_tracking_uri="sqlite:///own.db")
    on_server = server_settings(settings, "http://127.0.0.1:5999")
    assert on_server.tracking_uri == "http://127.0.0.1:5999"  # over MLFLOW_TRACKING_URI too
    assert settings.tracking_uri == "sqlite:///own.db"  # the stack's own settings unchanged
    assert on_server.model_dump(exclude={"mlflow_tracking_uri"}) == settings.model_dump(
        exclude={"mlflow_tracking_uri"}
    )


def test_a_store_is_empty_until_a_day_is_ingested(tmp_path: Path) -> None:
    settings = helpers.local_settings(tmp_path)
    assert store_is_empty(settings)
    ingest(settings, date(2021, 3, 10), SYNTHETIC)
    assert not store_is_empty(settings)


def test_recent_days_end_on_the_last_local_day_of_the_current_data(tmp_path: Path) -> None:
    settings = helpers.local_settings(tmp_path, pipeline_recent_days=3)
    # 22:30 UTC on 30 April is 00:30 on 1 May in Paris: the day is the local one.
    current = helpers.raw_records(
        [
            {TIMESTAMP: "2021-04-20T08:00:00+02:00"},
            {TIMESTAMP: "2021-04-30T22:30:00+00:00"},
            {TIMESTAMP: "2021-04-30T12:00:00+02:00"},
        ]
    )
    settings.data_dir.mkdir()
    current.to_csv(settings.dataset_path("current"), sep=";", index=False)
    days, coming = recent_days(settings)
    assert days == [date(2021, 4, 29), date(2021, 4, 30), date(2021, 5, 1)]
    assert coming == date(2021, 5, 2)


# --- The bootstrap's errors --------------------------------------------------------------------

BAD_RAW_FILES = {
    "empty": ("raw.csv", b"", "cannot be read as a record file"),
    "comma-separated": ("raw.csv", b"a,b\n1,2\n", "looks comma-separated"),
    "no valid row": (
        "raw.csv",
        f"{COUNTER};{TIMESTAMP};{COORDINATES};{COUNT}\nx;not a time;nowhere;-3\n".encode(),
        "no records to split",
    ),
    "gzip cut short": ("raw.csv.gz", b"\x1f\x8b\x08\x00cut", "cut short"),
}


@pytest.mark.parametrize("case", BAD_RAW_FILES, ids=str)
def test_data_sets_that_cannot_be_made_stop_the_bootstrap_before_mlflow(
    tmp_path: Path, case: str
) -> None:
    name, content, reason = BAD_RAW_FILES[case]
    settings = helpers.local_settings(tmp_path)
    settings.data_dir.mkdir()
    (settings.data_dir / name).write_bytes(content)
    recorder = Recorder()
    # Nothing listens at the tracking URI: the error must come from the data, before MLflow.
    with pytest.raises(BootstrapError, match="could not prepare the data sets") as caught:
        bootstrap(settings, registry_on(settings, helpers.closed_port_url()), recorder.hooks())
    assert reason in str(caught.value)
    assert isinstance(caught.value, StackError)  # what `bikecount up` reports without a trace
    assert data_missing(settings)
    assert recorder.training == [] and recorder.trained == []


@pytest.fixture
def bounded_mlflow_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client told not to retry a dead server (its defaults wait for minutes)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


@pytest.mark.usefixtures("bounded_mlflow_client")
def test_a_registry_that_cannot_be_asked_is_an_error_never_no_champion(
    tmp_path: Path, small_raw: pd.DataFrame
) -> None:
    settings = helpers.local_settings(tmp_path)
    write_datasets(small_raw, settings)
    written = {name: settings.dataset_path(name).stat().st_mtime_ns for name in DATASET_FILES}
    uri = helpers.closed_port_url()
    recorder = Recorder()
    with pytest.raises(BootstrapError) as caught:
        bootstrap(settings, registry_on(settings, uri), recorder.hooks())
    message = str(caught.value)
    assert message.startswith("could not list the models registered in MLflow: ")
    assert f"MLflow at {uri} could not read the rf champion" in message
    assert isinstance(caught.value.__cause__, RegistryUnavailableError)
    assert recorder.training == [] and recorder.trained == []  # nothing trained "first"
    assert {n: settings.dataset_path(n).stat().st_mtime_ns for n in DATASET_FILES} == written


@pytest.mark.usefixtures("bounded_mlflow_client")
def test_champion_lookups_on_a_dead_registry_raise() -> None:
    registry = Registry(Settings(_env_file=None, mlflow_tracking_uri=helpers.closed_port_url()))
    with pytest.raises(RegistryUnavailableError):
        types_without_champion(registry, ["gbm"])
    with pytest.raises(RegistryUnavailableError):
        types_with_test_mode_champion(registry, ["gbm"])


# --- A first start on an empty machine, and the starts after it --------------------------------


@dataclass
class Start:
    """One call of ``bootstrap``: its report, callbacks and what the registry held after it."""

    report: BootstrapReport
    recorder: Recorder
    versions: dict[str, list[VersionInfo]]
    without_champion: list[str]
    test_mode_champions: list[str]
    data_files: dict[str, int]


@dataclass
class FirstStarts:
    settings: Settings
    tracking_uri: str
    first: Start
    second: Start
    third: Start


def first_model_mb(model_type: str, rows: int) -> float:
    """The estimated size of a first (test-mode) model of ``model_type`` on ``rows`` rows."""
    params = parse_params(model_type, {}, fast=True)
    return estimate_training_cost(model_type, params, rows, rows).model_mb


@pytest.fixture(scope="module")
def first_starts(tmp_path_factory: pytest.TempPathFactory) -> FirstStarts:
    """Three starts on one machine with no data and an empty MLflow store.

    On the first, a model size limit that only the ensemble's first model (rf and gbm) breaks
    makes that one training
    fail (a real refusal by ``train()``); the second start has the usual limits.
    """
    root = tmp_path_factory.mktemp("first-start")
    settings = helpers.local_settings(root)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = Registry(server_settings(settings, tracking_uri))
    rows = settings.test_sample_rows
    others = max(first_model_mb(t, rows) for t in MODEL_TYPES if t != "ensemble")
    assert first_model_mb("ensemble", rows) > others, (
        "the catalogue changed: choose another failing type"
    )
    strict = settings.model_copy(
        update={"train_max_model_mb": (first_model_mb("ensemble", rows) + others) / 2}
    )

    def start(with_settings: Settings) -> Start:
        recorder = Recorder()
        report = bootstrap(server_settings(with_settings, tracking_uri), registry, recorder.hooks())
        return Start(
            report,
            recorder,
            versions_by_type(registry),
            types_without_champion(registry, MODEL_TYPES),
            types_with_test_mode_champion(registry, MODEL_TYPES),
            {n: settings.dataset_path(n).stat().st_mtime_ns for n in DATASET_FILES},
        )

    return FirstStarts(settings, tracking_uri, start(strict), start(settings), start(settings))


@pytest.mark.slow
def test_a_first_start_makes_the_data_and_trains_first_models(first_starts: FirstStarts) -> None:
    settings, first = first_starts.settings, first_starts.first
    report, text = first.report, first.recorder.text()
    assert report.data_prepared
    assert not data_missing(settings)
    assert f"no data sets in {settings.data_dir}/: preparing them" in text
    assert "no data found: generating synthetic records into" in text
    assert (settings.data_dir / "raw.csv.gz").is_file()  # the generator's records, kept
    # Every type that trained has a first model: version 1, champion, fitted on the test sample.
    assert sorted(report.trained) == ["gbm", "nn", "rf", "rf_class"]
    for model_type, result in report.trained.items():
        assert (result.version, result.champion) == (1, True), model_type
        assert Path(result.data_path) == settings.dataset_path("test_sample")
        assert result.rows_fit <= settings.test_sample_rows
        (version,) = first.versions[model_type]
        assert version.champion and version.test_mode
    assert first.test_mode_champions == ["rf", "gbm", "nn", "rf_class"]
    assert report.reused == []


@pytest.mark.slow
def test_a_type_that_fails_is_reported_and_the_others_still_train(
    first_starts: FirstStarts,
) -> None:
    first = first_starts.first
    recorder = first.recorder
    assert list(first.report.failed) == ["ensemble"]
    assert "BIKECOUNT_TRAIN_MAX_MODEL_MB" in first.report.failed["ensemble"]
    assert first.versions["ensemble"] == []  # refused before any run: nothing registered
    assert first.without_champion == ["ensemble"]
    # One announcement of every missing type, then each type's outcome in order: the failure
    # (fourth) is reported through the hooks and the types after it train anyway.
    assert recorder.training == [list(MODEL_TYPES)]
    assert "no model registered for rf, gbm, nn, ensemble, rf_class: training first models" in (
        recorder.text()
    )
    outcomes = [(t, result is not None, type(error)) for t, result, error in recorder.trained]
    assert outcomes == [
        ("rf", True, type(None)),
        ("gbm", True, type(None)),
        ("nn", True, type(None)),
        ("ensemble", False, TrainingCostError),
        ("rf_class", True, type(None)),
    ]
    # Every training ran inside the chatter guard, and every stage came from inside one.
    assert recorder.chatters == len(MODEL_TYPES)
    assert {t for t, _, _ in recorder.stages} == set(MODEL_TYPES)
    assert all(inside for _, _, inside in recorder.stages)
    assert not any(
        stage.startswith("fitting") for t, stage, _ in recorder.stages if t == "ensemble"
    )
    assert any(stage.startswith("fitting") for t, stage, _ in recorder.stages if t == "nn")


@pytest.mark.slow
def test_the_next_start_trains_only_what_is_missing(first_starts: FirstStarts) -> None:
    first, second = first_starts.first, first_starts.second
    report = second.report
    assert not report.data_prepared
    assert second.data_files == first.data_files  # the data sets were not made again
    assert report.reused == ["rf", "gbm", "nn", "rf_class"]
    assert list(report.trained) == ["ensemble"] and report.failed == {}
    assert second.recorder.training == [["ensemble"]]
    assert "models found for rf, gbm, nn, rf_class: reusing them" in second.recorder.text()
    assert [v.version for v in second.versions["ensemble"]] == [1]
    for model_type in ("rf", "gbm", "nn", "rf_class"):  # the reused champions were left alone
        assert second.versions[model_type] == first.versions[model_type]
    assert second.without_champion == []
    assert second.test_mode_champions == list(MODEL_TYPES)


@pytest.mark.slow
def test_a_start_with_data_and_every_champion_does_nothing(first_starts: FirstStarts) -> None:
    second, third = first_starts.second, first_starts.third
    assert third.report == BootstrapReport(reused=list(MODEL_TYPES))
    assert third.recorder.training == [] and third.recorder.trained == []
    assert third.recorder.chatters == 0
    assert third.versions == second.versions  # nothing registered, no alias moved
    assert third.data_files == second.data_files


def test_background_work_stops_with_a_message_when_the_api_is_down(
    tmp_path: Path, small_raw: pd.DataFrame
) -> None:
    settings = helpers.local_settings(tmp_path, pipeline_recent_days=1)
    write_datasets(small_raw, settings)
    api_url = helpers.closed_port_url()
    messages: list[str] = []
    registry = registry_on(settings, helpers.closed_port_url())
    work = BackgroundWork(settings, registry, api_url, messages.append)
    work.start()
    assert work.thread is not None
    work.thread.join(60)
    assert not work.thread.is_alive()
    assert messages[0].startswith("filling the pipeline store: generated counts of")
    assert messages[-1].startswith("background work stopped: ")
    assert f"the RegModel API at {api_url} is unreachable" in messages[-1]
    assert not any(m.startswith("training full models") for m in messages)  # stopped there
    assert work.trained == [] and work.failed == {}
