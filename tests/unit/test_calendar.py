"""The features' local calendar, computed with numpy, is what pandas' own accessors say.

``read_calendar`` replaced ``.dt.hour``, ``.dt.weekday``, ``.dt.date.isin(holidays)``... for
speed; these tests keep it to their answers across decades, daylight-saving nights and holidays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bikecount.features import french_holidays, read_calendar, school_holidays
from bikecount.records import PARIS_TZ


@pytest.mark.parametrize(
    "timestamps",
    [
        pd.Series(pd.date_range("1995-01-01", "2045-12-31", freq="7h", tz=PARIS_TZ)),
        # Every hour around both daylight-saving nights of 2021, and a naive series.
        pd.Series(pd.date_range("2021-03-27", "2021-03-29", freq="15min", tz=PARIS_TZ)),
        pd.Series(pd.date_range("2021-10-30", "2021-11-01", freq="15min", tz=PARIS_TZ)),
        pd.Series(pd.date_range("2020-12-30", "2021-01-02", freq="1h")),
    ],
    ids=["decades", "spring-night", "autumn-night", "naive"],
)
def test_calendar_is_the_one_pandas_accessors_give(timestamps: pd.Series) -> None:
    timestamps.index = np.arange(len(timestamps)) * 3  # any index: values are by position
    years = timestamps.dt.year.unique()
    dates = timestamps.dt.date

    calendar = read_calendar(timestamps)

    np.testing.assert_array_equal(calendar.hour, timestamps.dt.hour.to_numpy())
    np.testing.assert_array_equal(calendar.weekday, timestamps.dt.weekday.to_numpy())
    np.testing.assert_array_equal(calendar.month, timestamps.dt.month.to_numpy())
    np.testing.assert_array_equal(calendar.day_of_year, timestamps.dt.dayofyear.to_numpy())
    np.testing.assert_array_equal(
        calendar.is_holiday, dates.isin(french_holidays(years)).to_numpy()
    )
    np.testing.assert_array_equal(
        calendar.is_school_holiday, dates.isin(school_holidays(years)).to_numpy()
    )
    assert calendar.hour.dtype == timestamps.dt.hour.dtype


def test_day_types_are_weekday_saturday_and_sunday_or_holiday() -> None:
    days = ["2021-07-12", "2021-07-13", "2021-07-14", "2021-07-17", "2021-07-18"]
    timestamps = pd.Series(pd.to_datetime(days).tz_localize(PARIS_TZ))

    # Monday, Tuesday, Wednesday 14 July (a public holiday), Saturday, Sunday.
    assert read_calendar(timestamps).day_type.tolist() == [0, 0, 2, 1, 2]
