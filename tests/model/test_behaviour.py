"""Behaviour of trained models: what any sensible bike-traffic model must get right.

Each model type is fitted once per module, with its fast (test-mode) settings, on 8 generated
counters over October-December 2020, a period with two weekday public holidays (11 November,
25 December). The questions are asked on records built by hand for known counters and dates.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

import helpers
from bikecount.inference import predict_records
from bikecount.models import build_model, parse_params
from bikecount.records import parse_records, to_raw_records

REGRESSORS: list = ["rf", "gbm", "nn"]
MODEL_TYPES = [*REGRESSORS, "rf_class"]

# A Tuesday and a Thursday in term time, not public holidays, before any counter's outage
# (one counter of this generated set is out of order from 28 November).
WEEKDAYS = ("2020-10-13", "2020-11-19")
HOLIDAY, SAME_WEEKDAY_BEFORE, SAME_WEEKDAY_AFTER = "2020-11-11", "2020-11-04", "2020-11-18"

Model = object
Scores = Callable[[pd.DataFrame], np.ndarray]


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    raw = helpers.generate_raw(helpers.MODEL_CONFIG)
    return parse_records(raw, require_count=True).frame


@pytest.fixture(scope="module")
def fit_model(training_frame: pd.DataFrame) -> Callable[[str], Model]:
    """Fit a model type once per module (on first use), with its fast settings."""
    fitted: dict[str, Model] = {}

    def fit(model_type: str) -> Model:
        if model_type not in fitted:
            model = build_model(model_type, parse_params(model_type, fast=True), seed=42)
            fitted[model_type] = model.fit(training_frame, training_frame["count"].to_numpy())
        return fitted[model_type]

    return fit


# Function-scoped on purpose: the fitted models themselves are cached per module by fit_model.
@pytest.fixture(scope="function", params=MODEL_TYPES)
def model_type(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="function", params=REGRESSORS)
def regressor(request: pytest.FixtureRequest, fit_model: Callable[[str], Model]) -> Model:
    return fit_model(request.param)


@pytest.fixture(scope="function")
def classifier(fit_model: Callable[[str], Model]) -> Model:
    return fit_model("rf_class")


@pytest.fixture(scope="function")
def scores(model_type: str, fit_model: Callable[[str], Model]) -> Scores:
    """Predicted counts of a regressor, or the probability of ``forte`` of the classifier."""
    model = fit_model(model_type)
    if model_type == "rf_class":
        return lambda records: model.predict_proba(records)[:, 1]
    return model.predict


@pytest.fixture(scope="module")
def places(training_frame: pd.DataFrame) -> list[tuple[str, float, float]]:
    return helpers.counter_places(training_frame)


def per_counter(values: np.ndarray, places: list, times: list[str]) -> np.ndarray:
    """Scores of ``canonical_records(places, times)`` as a (counters x times) table."""
    return values.reshape(len(places), len(times))


# --- what traffic looks like ---------------------------------------------------------------


@pytest.mark.parametrize("day", WEEKDAYS)
def test_8am_on_a_weekday_beats_3am(scores: Scores, places: list, day: str) -> None:
    times = [f"{day} 03:00", f"{day} 08:00"]

    table = per_counter(scores(helpers.canonical_records(places, times)), places, times)

    night, morning = table[:, 0], table[:, 1]
    assert (morning > night).all(), dict(zip([p[0] for p in places], table.tolist(), strict=True))


def test_public_holiday_is_quieter_than_a_normal_weekday(
    scores: Scores, places: list, training_frame: pd.DataFrame
) -> None:
    # 11 November 2020 was a Wednesday: compare 8 am with the Wednesdays before and after.
    times = [f"{day} 08:00" for day in (HOLIDAY, SAME_WEEKDAY_BEFORE, SAME_WEEKDAY_AFTER)]

    table = per_counter(scores(helpers.canonical_records(places, times)), places, times)

    holiday, normal = table[:, 0], table[:, 1:].min(axis=1)
    # City-wide, the holiday morning is clearly quieter...
    assert holiday.sum() < 0.8 * normal.sum()
    # ...and at each of the busier half of the counters (the quietest ones are noisy).
    level = training_frame.groupby("counter")["count"].mean()
    busy = level.loc[[p[0] for p in places]].to_numpy() >= level.median()
    assert (holiday[busy] < normal[busy]).all()


def test_predicted_counts_are_never_negative(
    regressor: Model, training_frame: pd.DataFrame, places: list
) -> None:
    # Every hour of the training data, plus times and places the model never saw.
    unseen = [("Totem loin d'ici", 48.70, 2.15), ("Nouveau compteur", 49.0, 2.55)]
    times = ["2021-06-01 03:00", "2021-08-15 08:00", "2030-01-01 00:00", "2020-10-25 03:00"]
    records = pd.concat(
        [training_frame, helpers.canonical_records(places + unseen, times)], ignore_index=True
    )

    predictions = regressor.predict(records)

    assert predictions.shape == (len(records),)
    assert np.isfinite(predictions).all()
    assert predictions.min() >= 0


# --- the interface: order, spellings, unseen counters --------------------------------------


def test_output_order_follows_input_order(scores: Scores, training_frame: pd.DataFrame) -> None:
    sample = training_frame.sample(300, random_state=1)
    order = np.random.default_rng(2).permutation(len(sample))

    expected = scores(sample)[order]

    np.testing.assert_allclose(scores(sample.iloc[order]), expected)
    np.testing.assert_allclose(scores(sample.iloc[order].reset_index(drop=True)), expected)


def test_repeated_index_labels_give_one_prediction_per_row(
    fit_model: Callable[[str], Model], training_frame: pd.DataFrame
) -> None:
    rf = fit_model("rf")
    records = pd.concat([training_frame.head(3), training_frame.head(3)])  # index 0,1,2,0,1,2

    predictions = rf.predict(records)

    assert predictions.shape == (6,)


def test_raw_records_in_either_spelling_give_the_same_predictions(
    scores: Scores, training_frame: pd.DataFrame
) -> None:
    sample = training_frame.sample(200, random_state=3)
    french = to_raw_records(sample)

    expected = scores(sample)

    np.testing.assert_allclose(scores(french), expected)
    np.testing.assert_allclose(scores(helpers.to_snake_case(french)), expected)


def test_unseen_counter_is_predicted_like_its_nearest_known_counter(
    scores: Scores, places: list
) -> None:
    times = ["2020-11-17 08:00", "2020-11-21 15:00", "2020-12-02 22:00"]
    known = per_counter(scores(helpers.canonical_records(places, times)), places, times)
    # A new counter a metre or so from each known one (both directions of a site stand at the
    # same place, so its nearest counter is one of the two).
    new = [(f"Nouveau {name}", lat + 1e-5, lon + 1e-5) for name, lat, lon in places]

    predicted = per_counter(scores(helpers.canonical_records(new, times)), new, times)

    for i, (_, lat, lon) in enumerate(places):
        site = [j for j, (_, la, lo) in enumerate(places) if (la, lo) == (lat, lon)]
        # Trees give the very same values; a network, whose inputs include the coordinates,
        # moves a hair for the metre of difference.
        close = [np.allclose(predicted[i], known[j], rtol=1e-3) for j in site]
        assert any(close), (places[i][0], predicted[i], [known[j] for j in site])


# --- the affluence classifier --------------------------------------------------------------


def test_classifier_predicts_labels_with_probabilities_summing_to_one(
    classifier: Model, training_frame: pd.DataFrame
) -> None:
    sample = training_frame.sample(500, random_state=4)

    labels = classifier.predict(sample)
    proba = classifier.predict_proba(sample)

    assert set(np.unique(labels)) == {0, 1}
    assert list(classifier.classes_) == [0, 1]
    assert proba.shape == (500, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))


def test_classifier_thresholds_are_the_counters_training_means(
    classifier: Model, training_frame: pd.DataFrame
) -> None:
    means = training_frame.groupby("counter")["count"].mean()

    pd.testing.assert_series_equal(
        classifier.thresholds_.sort_index(), means.sort_index(), check_names=False
    )
    assert classifier.default_threshold_ == pytest.approx(training_frame["count"].mean())


def test_labels_for_judges_counts_against_the_stored_thresholds(
    classifier: Model, places: list
) -> None:
    name, lat, lon = places[0]
    bar = classifier.thresholds_[name]
    records = helpers.canonical_records(
        [(name, lat, lon), ("Compteur inconnu", lat, lon)], ["2020-11-17 08:00", "2020-11-17 09:00"]
    )
    default = classifier.default_threshold_
    counts = np.array([bar - 0.5, bar + 0.5, default - 0.5, default + 0.5])

    assert classifier.labels_for(records, counts).tolist() == [0, 1, 0, 1]
    assert classifier.labels_for(to_raw_records(records), counts).tolist() == [0, 1, 0, 1]
    # The count equal to the bar is not above it.
    assert classifier.labels_for(records.head(1), np.array([bar])).tolist() == [0]


def test_classifier_thresholds_travel_with_the_pickled_model(
    classifier: Model, training_frame: pd.DataFrame
) -> None:
    sample = training_frame.sample(200, random_state=5)
    counts = sample["count"].to_numpy()

    restored = pickle.loads(pickle.dumps(classifier))

    pd.testing.assert_series_equal(restored.thresholds_, classifier.thresholds_)
    np.testing.assert_array_equal(
        restored.labels_for(sample, counts), classifier.labels_for(sample, counts)
    )
    np.testing.assert_array_equal(restored.predict(sample), classifier.predict(sample))


def test_classifier_serving_runs_the_pipeline_once_and_labels_follow_probabilities(
    classifier: Model, places: list, caplog: pytest.LogCaptureFixture
) -> None:
    # What the legacy /predict does: labels and P(forte) of records with an unseen counter.
    new = [(f"Nouveau {name}", lat + 1e-5, lon + 1e-5) for name, lat, lon in places[:2]]
    records = helpers.canonical_records(new, ["2020-11-17 08:00", "2020-11-21 03:00"])

    with caplog.at_level(logging.WARNING, logger="bikecount.features"):
        served = predict_records(classifier, "classification", records)

    unseen = [r for r in caplog.records if "unseen counter" in r.getMessage()]
    assert len(unseen) == 1  # one pass through the features, one warning
    assert served.proba_forte is not None and served.labels is not None
    np.testing.assert_array_equal(served.values, (served.proba_forte > 0.5).astype(int))
    np.testing.assert_array_equal(served.values, classifier.predict(records))
    assert served.labels == [("faible", "forte")[v] for v in served.values]
