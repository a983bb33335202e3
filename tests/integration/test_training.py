"""train() end to end against a real MLflow server: runs, registry versions, the champion rules.

The session's MLflow server serves the module, under the module's own prefix. Tests that
depend on the champion alias first delete the registered model they use, so each starts from
an empty registry whatever ran before it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from servers import Tracking

import helpers
from bikecount.config import Settings
from bikecount.data.io import read_records, write_records
from bikecount.data.split import split_by_time
from bikecount.data.synthetic import SynthConfig
from bikecount.evaluate import CLASSIFICATION_METRICS, REGRESSION_METRICS
from bikecount.fingerprint import file_fingerprint
from bikecount.inference import predict_file
from bikecount.intervals import calibration_of
from bikecount.models import HyperparameterError, parse_params
from bikecount.records import COORDINATES
from bikecount.registry import CHAMPION, Registry
from bikecount.stopping import StopToken, TrainingTimeoutError
from bikecount.train import TrainRequest, TrainResult, train

pytestmark = pytest.mark.integration

# 6 counters: March-April 2021 are the reference data, May 2021 the current data.
DATA_CONFIG = SynthConfig(start="2021-03-01", months=3, n_counters=6, seed=23)
SPLIT_AT = "2021-05-01"
TEST_SAMPLE_ROWS = 1000
# A full-data forest that is good enough and quick to fit; and one that cannot be good.
GOOD_FOREST = {"n_estimators": 20}
BAD_FOREST = {"n_estimators": 1, "max_leaf_nodes": 2}
RUN_TAGS = ("model_type", "env", "test_mode", "data_source", "data_fingerprint")


@pytest.fixture(scope="module")
def settings(
    tracking: Tracking,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """Settings pointing at the server, with the three data sets written under a temp folder."""
    root = tmp_path_factory.mktemp("training")
    settings = Settings(
        _env_file=None,
        env="dev",
        mlflow_tracking_uri=tracking.url,
        mlflow_prefix=tracking.prefix,
        data_dir=root / "data",
        mlruns_dir=root / "mlruns",
        artifacts_dir=root / "artifacts",
    )
    reference, current = split_by_time(helpers.generate_raw(DATA_CONFIG), cutoff=SPLIT_AT)
    test_sample = reference.sample(TEST_SAMPLE_ROWS, random_state=0).sort_index()
    write_records(reference, settings.dataset_path("reference"))
    write_records(current, settings.dataset_path("current"))
    write_records(test_sample, settings.dataset_path("test_sample"))

    # train() points the mlflow module at the server; put back what other tests had.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield settings
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@pytest.fixture(scope="module")
def raw_sample(settings: Settings) -> pd.DataFrame:
    """Raw records as read from the current data file (all 16 export columns, as strings)."""
    return read_records(settings.dataset_path("current")).head(40)


def forget_registered_model(client: MlflowClient, settings: Settings, model_type: str) -> None:
    """Delete ``<prefix>-<type>`` (its versions and aliases): the next run is the first."""
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(settings.mlflow_name(model_type))


def champion_of(client: MlflowClient, settings: Settings, model_type: str) -> int:
    version = client.get_model_version_by_alias(settings.mlflow_name(model_type), CHAMPION)
    return int(version.version)


def train_model(
    settings: Settings, model_type: str = "rf", *, test_mode: bool = False, **hyperparams: object
) -> TrainResult:
    request = TrainRequest(model_type=model_type, test_mode=test_mode, hyperparams=hyperparams)
    return train(request, settings, Registry(settings))


# --- a first run ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["rf", "gbm", "rf_class"])
def test_first_test_mode_run_is_logged_registered_crowned_and_loadable(
    settings: Settings, client: MlflowClient, raw_sample: pd.DataFrame, model_type: str
) -> None:
    forget_registered_model(client, settings, model_type)

    result = train_model(settings, model_type, test_mode=True)

    data_path = settings.dataset_path("test_sample")
    assert Path(result.data_path) == data_path  # test mode trains on the test sample
    assert result.rows_train + result.rows_holdout == TEST_SAMPLE_ROWS
    assert result.rows_dropped == 0

    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == settings.experiment_name()
    assert {k: run.data.tags.get(k) for k in RUN_TAGS} == {
        "model_type": model_type,
        "env": "dev",
        "test_mode": "true",
        "data_source": "reference",
        "data_fingerprint": file_fingerprint(data_path),
    }
    fast = parse_params(model_type, fast=True).model_dump()
    assert {k: run.data.params[k] for k in fast} == {k: str(v) for k, v in fast.items()}
    assert run.data.params["rows_train"] == str(result.rows_train)
    assert run.data.params["holdout_rule"] == "last 14 days"

    names = CLASSIFICATION_METRICS if model_type == "rf_class" else REGRESSION_METRICS
    logged = {name: run.data.metrics[name] for name in names}
    assert logged == pytest.approx(result.metrics, nan_ok=True)
    if model_type == "rf_class":
        assert 0.5 <= logged["accuracy"] <= 1 and 0 < logged["f1_score"] <= 1
    else:
        assert logged["rmse"] > 0 and logged["mae"] > 0 and not math.isnan(logged["r2"])

    assert (result.version, result.champion, result.champion_reason) == (1, True, "no champion yet")
    assert champion_of(client, settings, model_type) == 1
    assert client.get_model_version(result.model_name, "1").run_id == result.run_id
    assert result.model_name == settings.mlflow_name(model_type)

    model = Registry(settings).load_version(model_type, result.version)
    predictions = model.predict(raw_sample)
    assert predictions.shape == (len(raw_sample),)
    if model_type == "rf_class":
        assert set(np.unique(predictions)) <= {0, 1}
    else:
        assert (predictions >= 0).all()
    np.testing.assert_allclose(model.predict(helpers.to_snake_case(raw_sample)), predictions)


def test_a_registered_regressor_carries_its_holdout_intervals_into_predict(
    settings: Settings, raw_sample: pd.DataFrame, tmp_path: Path
) -> None:
    result = train_model(settings, "gbm", test_mode=True)
    registry = Registry(settings)

    calibration = calibration_of(registry.load_version("gbm", result.version))
    source = write_records(raw_sample, tmp_path / "records.csv")
    written = predict_file(registry, "gbm", source, tmp_path / "out.csv", result.version, 0.8)

    assert calibration is not None and calibration.source == "holdout"
    assert calibration.residuals == result.rows_holdout  # the evaluation fit's, not the refit's
    assert written.interval == 0.8
    out = read_records(tmp_path / "out.csv")
    lower, upper = out["lower"].astype(float), out["upper"].astype(float)
    prediction = out["prediction"].astype(float)
    assert (lower >= 0).all() and (lower <= upper).all()
    assert ((lower <= prediction) & (prediction <= upper)).mean() > 0.9


def test_two_prefixes_on_one_server_keep_their_champions_apart(
    settings: Settings, client: MlflowClient
) -> None:
    forget_registered_model(client, settings, "rf")
    ours = train_model(settings, test_mode=True)
    other = settings.model_copy(update={"mlflow_prefix": f"{settings.mlflow_prefix}-other"})
    assert Registry(other).champion("rf") is None, "our champion is not the other's"

    theirs = train_model(other, test_mode=True)

    assert (theirs.version, theirs.champion_reason) == (1, "no champion yet")
    assert theirs.model_name == f"{settings.mlflow_prefix}-other-rf"
    assert champion_of(client, settings, "rf") == ours.version
    experiment = client.get_experiment(client.get_run(theirs.run_id).info.experiment_id)
    assert experiment.name == f"{settings.mlflow_prefix}-other-dev"


# --- the champion rules --------------------------------------------------------------------


@pytest.mark.slow
def test_full_data_run_replaces_a_test_mode_champion(
    settings: Settings, client: MlflowClient
) -> None:
    forget_registered_model(client, settings, "rf")
    quick = train_model(settings, test_mode=True)
    assert quick.champion

    full = train_model(settings, **GOOD_FOREST)

    assert full.champion and "test-mode" in full.champion_reason
    assert champion_of(client, settings, "rf") == full.version == quick.version + 1
    tags = client.get_run(full.run_id).data.tags
    assert tags["test_mode"] == "false"
    assert tags["data_fingerprint"] == file_fingerprint(settings.dataset_path("reference"))
    assert Path(full.data_path) == settings.dataset_path("reference")


@pytest.mark.slow
def test_champion_is_kept_against_worse_test_mode_and_failed_runs(
    settings: Settings, client: MlflowClient, tmp_path: Path
) -> None:
    forget_registered_model(client, settings, "rf")
    good = train_model(settings, **GOOD_FOREST)
    assert good.champion

    # A deliberately worse model on the same data is registered, but not crowned.
    worse = train_model(settings, **BAD_FOREST)
    assert not worse.champion
    assert worse.version == good.version + 1
    assert champion_of(client, settings, "rf") == good.version
    worse_run = client.get_run(worse.run_id).data
    assert worse_run.tags["champion_decision"] == worse.champion_reason
    assert "does not beat" in worse.champion_reason
    assert "same" in worse.champion_reason and "holdout rows" in worse.champion_reason
    assert worse_run.metrics["champion_rmse_compared"] < worse.metrics["rmse"]

    # A test-mode run never replaces a champion trained on full data.
    quick = train_model(settings, test_mode=True)
    assert not quick.champion and "full data" in quick.champion_reason
    assert champion_of(client, settings, "rf") == good.version

    # Runs that fail raise, and leave the champion (and the registry) as they were.
    rf_versions = f"name='{settings.mlflow_name('rf')}'"
    versions_before = len(client.search_model_versions(rf_versions))
    bad_rows = read_records(settings.dataset_path("test_sample")).head(30)
    bad_rows[COORDINATES] = "0,0"
    no_valid_rows = write_records(bad_rows, tmp_path / "no_valid_rows.csv")
    unusable = TrainRequest(model_type="rf", data_source=str(no_valid_rows))
    with pytest.raises(ValueError, match="no valid records"):
        train(unusable, settings, Registry(settings))
    experiment = client.get_experiment_by_name(settings.experiment_name()).experiment_id
    runs_before = len(client.search_runs([experiment]))
    with pytest.raises(HyperparameterError, match="n_jobs"):  # refused before any run
        train_model(settings, n_estimators=2, n_jobs=0)
    assert len(client.search_runs([experiment])) == runs_before

    # A training stopped in its refit (the time limit passes as the refit starts: a clock of
    # our own) is a FAILED run, with no new version: the refit is stoppable as the first fit is.
    now = [0.0]
    stop = StopToken(time_limit=60, clock=lambda: now[0])

    def late_refit(stage: str) -> None:
        if stage.startswith("refitting"):
            now[0] = 61.0

    request = TrainRequest(model_type="rf", hyperparams={"n_estimators": 2})
    with pytest.raises(TrainingTimeoutError, match="time limit of 60 s .* while refitting"):
        train(request, settings, Registry(settings), on_stage=late_refit, stop=stop)
    failed = client.search_runs(
        [experiment], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert failed.info.status == "FAILED"
    assert failed.data.params["n_estimators"] == "2"
    assert "while refitting" in failed.data.tags["stopped_because"]
    assert champion_of(client, settings, "rf") == good.version
    assert (
        len(client.search_model_versions(f"name='{settings.mlflow_name('rf')}'")) == versions_before
    )


# --- refit and a fair champion decision ----------------------------------------------------


@pytest.mark.slow
def test_the_registered_model_is_refitted_on_every_row(
    settings: Settings, client: MlflowClient
) -> None:
    # Traffic triples in the last 14 days (the holdout): only a refit can know it.
    raw = read_records(settings.dataset_path("reference"))
    timestamps = pd.to_datetime(raw["Date et heure de comptage"], utc=True)
    recent = (timestamps > timestamps.max() - pd.Timedelta(days=14)).to_numpy()
    counts = raw["Comptage horaire"].astype(int)
    raw["Comptage horaire"] = np.where(recent, counts * 3, counts).astype(str)
    source = str(write_records(raw, settings.data_dir / "tripled_recently.csv"))
    forget_registered_model(client, settings, "rf")

    registry = Registry(settings)
    refitted = train(TrainRequest("rf", source, hyperparams=GOOD_FOREST), settings, registry)
    evaluation_only = train(
        TrainRequest("rf", source, hyperparams=GOOD_FOREST, refit=False), settings, registry
    )

    assert refitted.refit and not evaluation_only.refit
    assert refitted.rows_fit == refitted.rows_train + refitted.rows_holdout
    assert evaluation_only.rows_fit == evaluation_only.rows_train
    # The same evaluation fit, so the same holdout metrics; only what is registered differs.
    assert refitted.metrics == pytest.approx(evaluation_only.metrics)
    params = client.get_run(refitted.run_id).data.params
    assert params["rows_fit"] == str(refitted.rows_fit)
    assert params["trained_until"] == refitted.trained_until
    assert pd.Timestamp(refitted.trained_until) == timestamps.max()
    assert pd.Timestamp(evaluation_only.trained_until) < timestamps.max() - pd.Timedelta(days=13)
    last_days = raw[recent]
    truth = last_days["Comptage horaire"].astype(float).to_numpy()
    refit_error = np.abs(
        registry.load_version("rf", refitted.version).predict(last_days) - truth
    ).mean()
    evaluation_error = np.abs(
        registry.load_version("rf", evaluation_only.version).predict(last_days) - truth
    ).mean()
    assert refit_error < 0.5 * evaluation_error


@pytest.mark.slow
def test_a_better_challenger_on_the_same_file_wins_on_the_same_holdout(
    settings: Settings, client: MlflowClient
) -> None:
    forget_registered_model(client, settings, "rf")
    worse = train_model(settings, **BAD_FOREST)
    assert worse.champion  # the refit champion has seen its own holdout

    better = train_model(settings, **GOOD_FOREST)

    assert better.champion, better.champion_reason
    assert "both evaluation fits on the same" in better.champion_reason
    assert champion_of(client, settings, "rf") == better.version


def write_until(settings: Settings, name: str, end: str) -> str:
    """Reference + current records before ``end`` (a local day) as a file in the data folder."""
    raw = pd.concat(
        [read_records(settings.dataset_path(n)) for n in ("reference", "current")],
        ignore_index=True,
    )
    timestamps = pd.to_datetime(raw["Date et heure de comptage"], utc=True)
    before = raw[(timestamps < pd.Timestamp(end, tz="Europe/Paris")).to_numpy()]
    write_records(before, settings.data_dir / name)
    return str(settings.data_dir / name)


@pytest.mark.slow
def test_the_champion_is_judged_only_on_rows_after_its_trained_until(
    settings: Settings, client: MlflowClient
) -> None:
    to_may_20 = write_until(settings, "to_may_20.csv", "2021-05-21")
    everything = write_until(settings, "to_june.csv", "2021-06-01")
    registry = Registry(settings)

    # A champion that knows up to 20 May, a challenger trained to 31 May with a 14-day holdout
    # (from 18 May): only 21-31 May are rows the champion never saw.
    forget_registered_model(client, settings, "rf")
    champion = train(TrainRequest("rf", to_may_20, hyperparams=GOOD_FOREST), settings, registry)
    challenger = train(TrainRequest("rf", everything, hyperparams=GOOD_FOREST), settings, registry)
    assert champion.trained_until.startswith("2021-05-20T23:00")
    assert f"after champion v{champion.version}'s trained_until" in challenger.champion_reason
    unseen_rows = 11 * 24 * DATA_CONFIG.n_counters
    assert f"the {unseen_rows:,} holdout rows" in challenger.champion_reason

    # A champion that saw the challenger's whole holdout, evaluated on another: no fair
    # comparison, the champion stays.
    forget_registered_model(client, settings, "rf")
    knows_more = train(TrainRequest("rf", everything, hyperparams=GOOD_FOREST), settings, registry)
    older = train(TrainRequest("rf", to_may_20, hyperparams=GOOD_FOREST), settings, registry)
    assert not older.champion
    assert "no fair comparison" in older.champion_reason
    assert champion_of(client, settings, "rf") == knows_more.version

    # A champion trained before the challenger's holdout is scored on all of it.
    forget_registered_model(client, settings, "rf")
    first = train(TrainRequest("rf", "reference", hyperparams=BAD_FOREST), settings, registry)
    later = train(TrainRequest("rf", everything, hyperparams=GOOD_FOREST), settings, registry)
    assert later.champion, later.champion_reason
    assert f"which champion v{first.version} never saw" in later.champion_reason
