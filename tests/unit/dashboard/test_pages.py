"""The dashboard's pages run by Streamlit's AppTest: content from a real store, and the states
(empty store, API and MLflow down) instead of exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

DAYS = [date(2021, 6, 8), date(2021, 6, 9)]
COMING = date(2021, 6, 10)


def map_page() -> None:
    from bikecount.dashboard.pages import render_map

    render_map()


def counter_page() -> None:
    from bikecount.dashboard.pages import render_counter

    render_counter()


def models_page() -> None:
    from bikecount.dashboard.pages import render_models

    render_models()


def ask_page() -> None:
    from bikecount.dashboard.pages import render_ask

    render_ask()


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    import helpers
    from bikecount.config import Settings

    folder = tmp_path_factory.mktemp("pages-store")
    settings = Settings(_env_file=None, pipeline_db_url=f"sqlite:///{folder / 'pipeline.db'}")
    helpers.fill_dashboard_store(settings, DAYS, COMING)
    return settings.pipeline_db_url


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import helpers
    from bikecount.dashboard.resources import get_config, get_settings

    (port,) = helpers.free_ports(1)
    nowhere = f"http://127.0.0.1:{port}"
    for name, value in {
        "BIKECOUNT_PIPELINE_API_URL": nowhere,
        "BIKECOUNT_MLFLOW_TRACKING_URI": nowhere,
        "BIKECOUNT_DASHBOARD_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.clear()
    get_config.clear()
    yield monkeypatch
    get_settings.clear()
    get_config.clear()


def run(script: object) -> AppTest:
    app = AppTest.from_function(script, default_timeout=30)  # type: ignore[arg-type]
    return app.run()


def test_map_page_lists_every_counter(environment: pytest.MonkeyPatch, store_url: str) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", store_url)
    app = run(map_page)
    assert not app.exception
    assert any("52 counters counted on 2021-06-09" in c.value for c in app.caption)
    assert [r.value for r in app.radio][0] == "forecast of 2021-06-10"


def test_counter_page_follows_its_query_parameter(
    environment: pytest.MonkeyPatch, store_url: str
) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", store_url)
    app = AppTest.from_function(counter_page, default_timeout=30)
    app.query_params["counter"] = "Pont de Bercy NE-SO"
    app.run()
    assert not app.exception
    assert app.title[0].value == "Pont de Bercy NE-SO"
    assert app.selectbox[0].value == "Pont de Bercy NE-SO"


def test_an_empty_store_says_how_to_fill_it(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", f"sqlite:///{tmp_path / 'none.db'}")
    for page in (map_page, counter_page):
        app = run(page)
        assert not app.exception
        assert "holds no counts yet" in app.warning[0].value
    assert not (tmp_path / "none.db").exists() or (tmp_path / "none.db").stat().st_size == 0


def test_down_services_say_what_to_start(environment: pytest.MonkeyPatch, store_url: str) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", store_url)
    models, ask = run(models_page), run(ask_page)
    assert not models.exception and not ask.exception
    assert (
        "does not answer" in models.warning[0].value and "bikecount up" in models.warning[0].value
    )
    assert "RegModel API" in ask.warning[0].value


@pytest.fixture(scope="module")
def health_store_url(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pages' store, copied, with the last day's health: one counter out, the rest ok."""
    import shutil

    import pandas as pd

    from bikecount.health import CounterHealth
    from bikecount.pipeline.store import read_counts, replace_day_health
    from bikecount.pipeline.store_engine import open_store

    path = tmp_path_factory.mktemp("health-store") / "pipeline.db"
    shutil.copy(store_url.removeprefix("sqlite:///"), path)
    engine = open_store(f"sqlite:///{path}")
    counters = sorted(read_counts(engine, DAYS[-1], DAYS[-1])["counter"].unique())
    since = pd.Timestamp("2021-06-09 10:00", tz="Europe/Paris")
    rows = [CounterHealth(counters[0], "outage", since, 900.0, 40.0, None, None, (), "zeros")]
    rows += [
        CounterHealth(c, "ok", None, 900.0, 950.0, 450.0, 1800.0, (), "") for c in counters[1:]
    ]
    replace_day_health(engine, DAYS[-1], rows)
    return f"sqlite:///{path}"


def test_the_map_colours_counters_by_their_health(
    environment: pytest.MonkeyPatch, health_store_url: str
) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", health_store_url)
    app = run(map_page)
    assert app.radio[0].options[-1] == "health on 2021-06-09"
    app.radio[0].set_value("health on 2021-06-09").run()
    assert not app.exception
    assert any(
        "Health checked on 2021-06-09: 1 of 52 counters with a fault" in c.value
        for c in app.caption
    )


def test_the_health_mode_says_how_to_check_a_day_when_none_was(
    environment: pytest.MonkeyPatch, store_url: str
) -> None:
    environment.setenv("BIKECOUNT_PIPELINE_DB_URL", store_url)
    app = run(map_page)
    app.radio[0].set_value("health").run()
    assert not app.exception
    assert "bikecount pipeline health --date 2021-06-09" in app.info[0].value
