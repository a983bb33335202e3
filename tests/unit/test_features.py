"""The feature pipeline: columns and types, Paris calendar, counter encoding, unseen counters.

scikit-learn's ``parametrize_with_checks`` does not apply here: these transformers take record
frames with named columns of given meaning (a counter name, a tz-aware timestamp, coordinates
inside Paris), while the generic checks feed arbitrary numeric arrays. The contract is tested
directly instead: fit returns self, transform checks it is fitted, names out, pickling.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

import bikecount.features as features_module
import helpers
from bikecount.features import (
    FEATURE_COLUMNS,
    CounterCalendarFeatures,
    RecordParser,
    build_feature_pipeline,
)
from bikecount.records import RecordError, to_raw_records

FLOAT_FEATURES = ("counter_level", "profile_level", "lat", "lon")
INTEGER_FEATURES = [col for col in FEATURE_COLUMNS if col not in FLOAT_FEATURES]


@pytest.fixture(scope="module")
def fitted_pipeline(small_frame: pd.DataFrame) -> Pipeline:
    return build_feature_pipeline().fit(small_frame, small_frame["count"].to_numpy())


def features_at(pipeline: Pipeline, local_times: list[str], counter: str) -> pd.DataFrame:
    """Features of one known counter at naive Paris wall-clock times."""
    encoder = pipeline.named_steps["features"]
    code = list(encoder.counters_).index(counter)
    lat, lon = encoder.counter_places_[code]
    return pipeline.transform(helpers.canonical_records([(counter, lat, lon)], local_times))


def test_features_have_the_declared_columns_and_types(
    fitted_pipeline: Pipeline, small_raw: pd.DataFrame
) -> None:
    features = fitted_pipeline.transform(small_raw)

    assert list(features.columns) == list(FEATURE_COLUMNS)
    assert len(features) == len(small_raw)
    assert features.notna().all().all()
    for col in INTEGER_FEATURES:
        assert pd.api.types.is_integer_dtype(features[col]), col
    for col in FLOAT_FEATURES:
        assert features[col].dtype == np.float64, col
    assert features["hour"].between(0, 23).all()
    assert features["weekday"].between(0, 6).all()
    assert set(features["is_weekend"]) == {0, 1}
    assert list(fitted_pipeline.get_feature_names_out()) == list(FEATURE_COLUMNS)


def test_raw_records_in_either_spelling_give_the_same_features(
    fitted_pipeline: Pipeline, small_raw: pd.DataFrame, small_frame: pd.DataFrame
) -> None:
    raw = small_raw.head(200)

    from_french = fitted_pipeline.transform(raw)
    from_snake = fitted_pipeline.transform(helpers.to_snake_case(raw))
    from_canonical = fitted_pipeline.transform(small_frame.head(200))

    pd.testing.assert_frame_equal(from_french, from_snake)
    pd.testing.assert_frame_equal(from_french, from_canonical)


def test_invalid_raw_records_are_an_error_not_a_guess(fitted_pipeline: Pipeline) -> None:
    raw = helpers.raw_records([{}, {"Coordonnées géographiques": "0,0"}])

    with pytest.raises(RecordError):
        fitted_pipeline.transform(raw)


def test_local_hour_follows_daylight_saving_time(fitted_pipeline: Pipeline) -> None:
    counter = fitted_pipeline.named_steps["features"].counters_[0]
    raw = helpers.raw_records(
        {"Nom du compteur": counter, "Date et heure de comptage": stamp}
        for stamp in (
            "2021-03-28T01:00:00+01:00",
            "2021-03-28T03:00:00+02:00",
            "2021-03-28T06:00:00Z",  # 08:00 in Paris after the change
            "2021-03-27T06:00:00Z",  # 07:00 in Paris the day before
            "2021-10-31T02:00:00+01:00",
        )
    )

    features = fitted_pipeline.transform(raw)

    assert features["hour"].tolist() == [1, 3, 8, 7, 2]
    assert features["weekday"].tolist() == [6, 6, 6, 5, 6]
    assert features["is_weekend"].tolist() == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    ("day", "is_holiday", "is_school_holiday"),
    [
        ("2021-05-13", 1, None),  # Ascension
        ("2021-07-14", 1, 1),  # Fête nationale, inside the summer break
        ("2021-11-11", 1, None),  # Armistice
        ("2021-05-24", 1, None),  # Whit Monday
        ("2021-07-20", 0, 1),  # summer school break (zone C)
        ("2021-12-27", 0, 1),  # Christmas school break
        ("2021-06-15", 0, 0),  # a plain Tuesday in term time
        ("2021-09-14", 0, 0),
    ],
)
def test_public_and_school_holiday_flags(
    fitted_pipeline: Pipeline, day: str, is_holiday: int, is_school_holiday: int | None
) -> None:
    counter = fitted_pipeline.named_steps["features"].counters_[0]

    row = features_at(fitted_pipeline, [f"{day} 08:00", f"{day} 23:00"], counter)

    assert row["is_holiday"].tolist() == [is_holiday] * 2
    if is_school_holiday is not None:
        assert row["is_school_holiday"].tolist() == [is_school_holiday] * 2


def test_counter_codes_rank_counters_by_mean_target() -> None:
    places = [("a", 48.85, 2.35), ("b", 48.86, 2.30), ("c", 48.87, 2.40)]
    records = helpers.canonical_records(places, ["2021-06-01 08:00", "2021-06-01 09:00"])
    target = np.array([40, 60, 10, 10, 1, 1], dtype=float)  # means: a 50, b 10, c 1

    encoder = CounterCalendarFeatures()
    assert encoder.fit(records, target) is encoder
    features = encoder.transform(records)

    assert list(encoder.counters_) == ["c", "b", "a"]
    np.testing.assert_allclose(encoder.counter_level_, [1, 10, 50])
    assert features["counter_code"].tolist() == [2, 2, 1, 1, 0, 0]
    assert features["counter_level"].tolist() == [50, 50, 10, 10, 1, 1]


def test_counter_codes_follow_mean_counts_of_generated_data(
    fitted_pipeline: Pipeline, small_frame: pd.DataFrame
) -> None:
    means = small_frame.groupby("counter")["count"].mean().sort_values()

    encoder = fitted_pipeline.named_steps["features"]

    assert list(encoder.counters_) == list(means.index)
    np.testing.assert_allclose(encoder.counter_level_, means.to_numpy())


def test_unseen_counter_takes_the_code_of_the_nearest_known_counter(
    fitted_pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = fitted_pipeline.named_steps["features"]
    places = encoder.counter_places_
    # A point just off each known counter must be encoded as that counter (or its site twin,
    # which stands at the same place).
    new = [(f"Nouveau compteur {i}", lat + 1e-4, lon - 1e-4) for i, (lat, lon) in enumerate(places)]
    records = helpers.canonical_records(new, ["2021-06-01 08:00"])

    with caplog.at_level(logging.WARNING, logger="bikecount.features"):
        features = fitted_pipeline.transform(records)

    codes = features["counter_code"].to_numpy()
    np.testing.assert_allclose(places[codes], places, atol=1e-9)
    np.testing.assert_allclose(features["counter_level"], encoder.counter_level_[codes])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{len(places)} unseen counter(s)" in warnings[0].getMessage()
    assert "Nouveau compteur 0" in warnings[0].getMessage()


def test_known_counters_log_no_warning(
    fitted_pipeline: Pipeline, small_frame: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bikecount.features"):
        fitted_pipeline.transform(small_frame.head(50))

    assert caplog.records == []


def test_transform_before_fit_raises_not_fitted(small_frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        CounterCalendarFeatures().transform(small_frame.head(5))
    with pytest.raises(NotFittedError):
        build_feature_pipeline().transform(small_frame.head(5))


def test_estimators_only_store_parameters_until_fit() -> None:
    encoder, parser = CounterCalendarFeatures(), RecordParser()

    assert encoder.get_params() == {} and parser.get_params() == {}
    assert not [name for name in vars(encoder) if name.endswith("_")]


def test_fitted_pipeline_pickles_and_predicts_the_same(
    fitted_pipeline: Pipeline, small_frame: pd.DataFrame
) -> None:
    raw = to_raw_records(small_frame.tail(100))

    restored = pickle.loads(pickle.dumps(fitted_pipeline))

    pd.testing.assert_frame_equal(restored.transform(raw), fitted_pipeline.transform(raw))


def test_set_output_pandas_keeps_the_feature_names(small_frame: pd.DataFrame) -> None:
    pipeline = build_feature_pipeline().set_output(transform="pandas")
    pipeline.fit(small_frame, small_frame["count"])

    features = pipeline.transform(to_raw_records(small_frame.head(20)))

    assert list(features.columns) == list(FEATURE_COLUMNS)


def test_profile_level_is_the_counters_mean_at_that_hour_and_day_type(
    fitted_pipeline: Pipeline, small_frame: pd.DataFrame
) -> None:
    counter = small_frame["counter"].iloc[0]
    rows = small_frame[
        (small_frame["counter"] == counter)
        & (small_frame["timestamp"].dt.hour == 8)
        & (small_frame["timestamp"].dt.weekday == 2)  # Wednesdays, public holidays aside
    ]
    rows = rows[~rows["timestamp"].dt.date.astype(str).isin({"2020-11-11", "2021-07-14"})]
    features = fitted_pipeline.transform(rows.head(1))
    weekday_8am = small_frame[
        (small_frame["counter"] == counter)
        & (small_frame["timestamp"].dt.hour == 8)
        & (small_frame["timestamp"].dt.weekday < 5)
    ]
    holidays = features_module.french_holidays(small_frame["timestamp"].dt.year.unique())
    weekday_8am = weekday_8am[~weekday_8am["timestamp"].dt.date.isin(holidays)]

    assert features["profile_level"].iloc[0] == pytest.approx(weekday_8am["count"].mean())
