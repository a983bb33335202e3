"""Behaviour of the ``nn`` model (:mod:`bikecount.models.neural`) on a small hand-made data set.

Four counters of different sizes, hourly over three weeks of March 2021 (the spring DST night
included), with a commuter profile on weekdays (peaks at 8 am and 6 pm) and a flatter one at
weekends. The network is wrapped as in production: record parser and features, then the network,
on log1p(count), with the inverse clipped at zero.
"""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import NotFittedError

from bikecount.features import FEATURE_COLUMNS
from bikecount.models.neural import TorchRegressor, build_nn, build_nn_model
from bikecount.models.nn_network import NNParams

PARIS_TZ = "Europe/Paris"
# name: (mean count at the busiest hour, lat, lon)
COUNTERS = {
    "Quai Test E-O": (20.0, 48.8530, 2.3499),
    "Quai Test O-E": (60.0, 48.8531, 2.3500),
    "Rue Test N-S": (150.0, 48.8700, 2.3400),
    "Boulevard Test S-N": (300.0, 48.8400, 2.3200),
}
# A small network and few epochs: the whole module runs in a few seconds.
FAST = NNParams(embedding_dim=4, hidden_sizes=(32, 16), batch_size=128, max_epochs=12, patience=4)


def hourly_shape(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Share of the busiest hour's traffic: commute peaks on weekdays, an afternoon at weekends."""
    commute = np.exp(-0.5 * ((hour - 8) / 1.0) ** 2) + np.exp(-0.5 * ((hour - 18) / 1.3) ** 2)
    leisure = 0.6 * np.exp(-0.5 * ((hour - 15) / 3.0) ** 2)
    return 0.03 + np.where(weekend, leisure, commute)


def make_records(start: str, days: int, seed: int = 0) -> pd.DataFrame:
    """Canonical records (``counter, timestamp, lat, lon, count``), oldest first."""
    rng = np.random.default_rng(seed)
    instants = pd.date_range(start, periods=days * 24, freq="h", tz="UTC").tz_convert(PARIS_TZ)
    frames = []
    for name, (peak, lat, lon) in COUNTERS.items():
        hour = instants.hour.to_numpy()
        weekend = instants.weekday.to_numpy() >= 5
        mean = peak * hourly_shape(hour, weekend)
        frames.append(
            pd.DataFrame(
                {
                    "counter": name,
                    "timestamp": instants,
                    "lat": lat,
                    "lon": lon,
                    "count": rng.poisson(mean).astype(float),
                }
            )
        )
    records = pd.concat(frames, ignore_index=True)
    return records.sort_values("timestamp", kind="stable").reset_index(drop=True)


def query(counter: str, when: str) -> pd.DataFrame:
    """One record to predict, without a count."""
    _, lat, lon = COUNTERS[counter]
    timestamp = pd.Timestamp(when, tz=PARIS_TZ)
    return pd.DataFrame({"counter": [counter], "timestamp": [timestamp], "lat": lat, "lon": lon})


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return make_records("2021-03-08", days=21)


@pytest.fixture(scope="module")
def later() -> pd.DataFrame:
    """The week after training, to predict."""
    return make_records("2021-03-29", days=7, seed=1).drop(columns="count")


def fit_model(training: pd.DataFrame, params: NNParams = FAST, seed: int = 7):
    model = build_nn_model(params, seed)
    return model.fit(training, training["count"].to_numpy())


@pytest.fixture(scope="module")
def model(training: pd.DataFrame) -> TransformedTargetRegressor:
    return fit_model(training)


def test_predictions_have_one_value_per_record_in_order(model, later) -> None:
    predictions = model.predict(later)
    assert predictions.shape == (len(later),)
    assert predictions.dtype == np.float64
    reversed_rows = later.iloc[::-1]
    np.testing.assert_allclose(model.predict(reversed_rows), predictions[::-1], rtol=1e-6)


def test_8am_on_a_weekday_beats_3am(model) -> None:
    for counter in COUNTERS:
        at_8 = model.predict(query(counter, "2021-03-30 08:00"))[0]  # a Tuesday
        at_3 = model.predict(query(counter, "2021-03-30 03:00"))[0]
        assert at_8 > at_3, counter


def test_bigger_counters_get_bigger_predictions(model) -> None:
    peaks = [model.predict(query(name, "2021-03-31 08:00"))[0] for name in COUNTERS]
    assert peaks == sorted(peaks)


def test_predictions_are_never_negative(model, later) -> None:
    far = later.assign(timestamp=later["timestamp"] + pd.Timedelta(days=200))
    for records in (later, far):
        predictions = model.predict(records)
        assert np.isfinite(predictions).all()
        assert (predictions >= 0).all()


def test_raw_network_output_stays_in_the_trained_target_range(model, later) -> None:
    features = model.regressor_[:-1].transform(later)
    network: TorchRegressor = model.regressor_[-1]
    outputs = network.predict(features)
    low, high = network.scaling_.target_range
    assert outputs.ndim == 1
    assert ((outputs >= low) & (outputs <= high)).all()
    assert low >= 0  # log1p of counts


def test_same_seed_gives_identical_predictions(model, training, later) -> None:
    again = fit_model(training)
    np.testing.assert_array_equal(again.predict(later), model.predict(later))


def test_fit_leaves_torch_global_state_alone(training) -> None:
    threads = torch.get_num_threads()
    rng_state = torch.random.get_rng_state()
    fit_model(training, FAST.model_copy(update={"max_epochs": 1}))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng_state)


@pytest.mark.parametrize(
    "dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)]
)
def test_pickled_model_predicts_the_same(model, later, dumps, loads) -> None:
    restored = loads(dumps(model))
    np.testing.assert_array_equal(restored.predict(later), model.predict(later))


def test_early_stopping_stops_before_max_epochs(training) -> None:
    params = FAST.model_copy(update={"max_epochs": 60, "patience": 1, "refit": False})
    network = fit_model(training, params).regressor_[-1]
    assert network.n_epochs_ < 60
    assert 1 <= network.best_epoch_ <= network.n_epochs_
    assert len(network.history_) == network.n_epochs_
    best = min(valid for _, valid in network.history_)
    assert network.best_validation_loss_ == pytest.approx(best)


def test_a_fixed_epoch_count_trains_on_every_row_without_stopping(training) -> None:
    params = FAST.model_copy(update={"max_epochs": 60, "patience": 1, "epochs": 3})
    network = fit_model(training, params).regressor_[-1]
    assert network.n_epochs_ == network.best_epoch_ == 3
    assert len(network.history_) == 3
    assert all(np.isnan(valid) for _, valid in network.history_)
    # The encoding is learned on every row: the last rows are no validation slice.
    assert network.scaling_.target_range[1] == pytest.approx(np.log1p(training["count"]).max())


def test_the_deployment_refit_trains_for_the_epochs_early_stopping_chose(training) -> None:
    from bikecount.config import Settings
    from bikecount.fitting import deployment_params, fit_records

    params = FAST.model_copy(update={"max_epochs": 30, "patience": 2})
    evaluation = fit_records("nn", params, training, Settings(_env_file=None))
    chosen = evaluation.regressor_[-1].best_epoch_

    refit = deployment_params("nn", params, evaluation)

    assert refit.epochs == chosen
    assert refit.model_copy(update={"epochs": None}) == params


def test_unseen_counter_codes_take_the_spare_embedding(model, later) -> None:
    features = model.regressor_[:-1].transform(later).iloc[:48]
    network: TorchRegressor = model.regressor_[-1]
    spare = network.scaling_.n_codes - 1
    assert spare == len(COUNTERS)
    expected = network.predict(features.assign(counter_code=spare))
    for code in (spare, spare + 5, -1):
        predictions = network.predict(features.assign(counter_code=code))
        assert np.isfinite(predictions).all()
        np.testing.assert_array_equal(predictions, expected)


def test_a_bare_feature_array_is_read_in_feature_column_order(model, later) -> None:
    features = model.regressor_[:-1].transform(later).iloc[:24]
    network: TorchRegressor = model.regressor_[-1]
    array = features[list(FEATURE_COLUMNS)].to_numpy(dtype=float)
    np.testing.assert_allclose(network.predict(array), network.predict(features), rtol=1e-6)


def test_predict_before_fit_is_an_error(later) -> None:
    with pytest.raises(NotFittedError):
        TorchRegressor().predict(later)


def test_the_estimator_defaults_are_the_hyperparameters_defaults() -> None:
    defaults = TorchRegressor().get_params()
    assert defaults.pop("random_state") == 42
    assert defaults == NNParams().model_dump()


def test_build_nn_passes_every_hyperparameter_and_the_seed() -> None:
    params = NNParams(embedding_dim=8, dropout=0.2)
    network = build_nn(params, seed=3)
    assert network.random_state == 3
    assert {**params.model_dump(), "random_state": 3} == network.get_params()
    assert clone(network).get_params() == network.get_params()


@pytest.mark.parametrize(
    "values",
    [
        {"n_layers": 2},
        {"embedding_dim": 0},
        {"hidden_sizes": ()},
        {"hidden_sizes": (64, 0)},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"learning_rate": 0.0},
        {"batch_size": 1},
        {"max_epochs": 0},
        {"patience": 0},
        {"validation_fraction": 0.0},
        {"validation_fraction": 0.9},
    ],
)
def test_nn_params_reject_unknown_names_and_out_of_range_values(values: dict) -> None:
    with pytest.raises(ValidationError):
        NNParams(**values)


def test_bad_hyperparameters_set_later_are_refused_at_fit(training) -> None:
    network = build_nn(FAST, seed=0).set_params(dropout=2.0)
    features = pd.DataFrame(0, index=range(10), columns=list(FEATURE_COLUMNS))
    with pytest.raises(ValidationError):
        network.fit(features, np.zeros(10))
