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
