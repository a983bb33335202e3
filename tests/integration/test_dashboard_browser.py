"""The dashboard in a real headless Chromium, on a stack the test starts for real: an MLflow
server, the RegModel API with a first gbm model, a pipeline store filled by the first-start code,
and Streamlit serving the dashboard as ``bikecount up`` does. A second dashboard, pointed at
nothing, shows the down and empty states.

Screenshots of every page are saved under the test's temporary folder (the path is printed).
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from servers import ServerProcess, Tracking, api_env, running, start, start_api

import helpers
from bikecount.config import Settings
from bikecount.dashboard import charts
from bikecount.data.prepare import write_datasets
from bikecount.data.synthetic import SynthConfig, generate_records
from bikecount.health import HealthParams, HealthReport, check_health
from bikecount.pipeline.store import read_counts, read_predictions, replace_day_health
from bikecount.pipeline.store_engine import open_store
from bikecount.registry import Registry
from bikecount.stack.background import fill_store
from bikecount.stack.first_start import bootstrap, server_settings
from bikecount.stack.services import REGMODEL_APP, dashboard_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SEBASTOPOL = "Totem 73 boulevard de Sébastopol S-N"
# Every real counter, two months: the store's recent days come from the end of the current set.
DATA_CONFIG = SynthConfig(start="2021-06-01", months=2, seed=3)
PAGE_TIMEOUT_SECONDS = 90.0


if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.fail(
        "the dashboard's browser test needs Debian's chromium and chromium-driver "
        "(`make system-deps` installs them)",
        pytrace=False,
    )


@dataclass
class Stack:
    settings: Settings
    api_url: str
    dashboard_url: str
    broken_dashboard_url: str


def start_dashboard(
    root: Path, settings: Settings, api_url: str, tracking: Tracking
) -> ServerProcess:
    """The dashboard as ``bikecount up`` starts it (the product's command and environment)."""
    port = helpers.free_port()
    spec = dashboard_service(
        settings, "127.0.0.1", port, api_url=api_url, tracking_uri=tracking.url
    )
    env = {
        **api_env(root, tracking),
        **spec.env,
        "BIKECOUNT_DASHBOARD_CACHE_SECONDS": "2",
        "BIKECOUNT_PIPELINE_MODEL_TYPE": settings.pipeline_model_type,
    }
    return start(replace(spec, name=f"dashboard-{port}"), root, env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tracking: Tracking) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboard-stack")
    settings = helpers.local_settings(
        root,
        mlflow_prefix=tracking.prefix,
        pipeline_recent_days=8,
        pipeline_model_type="gbm",  # the one type trained here
    )
    write_datasets(generate_records(DATA_CONFIG), settings)
    on_server = server_settings(settings, tracking.url)
    bootstrap(on_server, Registry(on_server), model_types=("gbm",))
    env = api_env(root, tracking, model_check_seconds=1)
    with running(start_api("regmodel", REGMODEL_APP, root, env)) as (api,):
        fill_store(settings, api.url, on_message=print)
        nowhere = f"http://127.0.0.1:{helpers.free_port()}"
        empty = Settings(_env_file=None, pipeline_db_url=f"sqlite:///{root / 'empty.db'}")
        dashboards = (
            start_dashboard(root, settings, api.url, tracking),
            start_dashboard(root, empty, nowhere, Tracking(nowhere)),
        )
        with running(*dashboards) as (dashboard, broken):
            yield Stack(settings, api.url, dashboard.url, broken.url)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(
    tmp_path_factory: pytest.TempPathFactory, downloads: Path
) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")  # noqa: T201 (where to look at them)
    return folder


def wait_for(driver: webdriver.Chrome, ready: Callable[[], bool], what: str) -> None:
    """Poll until the app has finished running and ``ready()`` holds."""

    def done() -> bool:
        with_status = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        try:
            return not with_status and ready()
        except WebDriverException:
            return False

    helpers.wait_until(
        done, PAGE_TIMEOUT_SECONDS, what, lambda: f"page text:\n{page_text(driver)[:2000]}"
    )


def charts_drawn(driver: webdriver.Chrome) -> bool:
    """Whether every chart of the page has drawn its marks (Vega draws after the script ran)."""
    charts = driver.find_elements(By.CSS_SELECTOR, ".vega-embed")
    marks = "svg.marks .role-mark, canvas.marks"
    return all(chart.find_elements(By.CSS_SELECTOR, marks) for chart in charts)


def page_text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def has_text(driver: webdriver.Chrome, text: str) -> Callable[[], bool]:
    return lambda: text in page_text(driver)


def open_page(
    driver: webdriver.Chrome, url: str, ready: Callable[[], bool], what: str, shot: Path
) -> None:
    driver.get(url)
    wait_for(driver, ready, what)
    wait_for(driver, lambda: charts_drawn(driver), f"{what}: the charts drawn")
    driver.save_screenshot(str(shot))


def error_elements(driver: webdriver.Chrome) -> list[str]:
    selectors = '[data-testid="stException"], [data-testid="stAlertContentError"]'
    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, selectors)]


def table_rows(driver: webdriver.Chrome) -> list[list[str]]:
    """Header and body cells of the last ``st.table`` on the page."""
    table = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTable"] table')[-1]
    return [
        [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in table.find_elements(By.CSS_SELECTOR, "tr")
    ]


def map_points(driver: webdriver.Chrome) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, "g.mark-symbol path"))


def test_map_has_one_point_per_counter(stack: Stack, browser, screenshots: Path) -> None:
    counters = read_counts(open_store(stack.settings.pipeline_db_url))["counter"].nunique()
    assert counters == 52
    open_page(
        browser,
        stack.dashboard_url,
        lambda: map_points(browser) >= counters,
        "the map's points",
        screenshots / "map.png",
    )
    assert map_points(browser) == counters
    assert error_elements(browser) == []
    assert f"{counters} counters counted on" in page_text(browser)


def map_shapes(driver: webdriver.Chrome) -> list[str]:
    """The arrondissements' numbers written on the map, once its 20 shapes are drawn."""
    if len(driver.find_elements(By.CSS_SELECTOR, "g.mark-shape path")) < 20:
        return []
    numbers = driver.find_elements(By.CSS_SELECTOR, "g.mark-text.role-mark text")
    return [number.text for number in numbers]


def test_map_draws_the_counters_over_the_arrondissements(
    stack: Stack, browser, screenshots: Path
) -> None:
    open_page(
        browser,
        stack.dashboard_url,
        lambda: len(map_shapes(browser)) == 20 and map_points(browser) == 52,
        "the arrondissements and the counters",
        screenshots / "map-arrondissements.png",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "g.mark-shape path")) == 20
    assert sorted(map_shapes(browser), key=int) == [str(n) for n in range(1, 21)]
    assert error_elements(browser) == []
    assert "Arrondissements: Ville de Paris, Paris Open Data" in page_text(browser)
    # The city fills the map: its shapes span most of the chart, the counters inside them.
    city = browser.find_element(By.CSS_SELECTOR, "g.mark-shape").rect
    chart = browser.find_element(By.CSS_SELECTOR, "svg.marks").rect
    points = browser.find_element(By.CSS_SELECTOR, "g.mark-symbol").rect
    assert city["width"] > 0.5 * chart["width"] or city["height"] > 0.8 * chart["height"]
    assert city["x"] <= points["x"] and points["x"] + points["width"] <= city["x"] + city["width"]


def health_with_faults(settings: Settings) -> tuple[HealthReport, dict[str, str]]:
    """The store's last counted day checked by the real health check, on its counts with three
    faults injected in memory (the stored counts stay as they are), and stored as the pipeline
    stores it. The store holds eight days: a week of profile before the day checked, so one
    day of each kind (the day is a Saturday) is let make a profile.

    Returns:
        The stored report, and the status of each broken counter.
    """
    engine = open_store(settings.pipeline_db_url)
    counts = read_counts(engine)
    day = max(counts["day"])
    # Counters of three different sites (the two directions of a site are drawn 50 m apart).
    sites = counts[counts["counter"] != SEBASTOPOL].groupby("counter")[["lat", "lon"]].first()
    broken = sites.round(3).drop_duplicates().index[:3]
    faults = dict(zip(broken, [(0.0, "outage"), (0.3, "low"), (None, "stuck")], strict=True))
    after = counts["timestamp"] >= pd.Timestamp(day.isoformat()).tz_localize("Europe/Paris")
    after &= counts["timestamp"].dt.hour >= 7
    for counter, (factor, _) in faults.items():
        rows = after & (counts["counter"] == counter)
        counts.loc[rows, "count"] = 37.0 if factor is None else counts.loc[rows, "count"] * factor
    report = check_health(
        counts, day, HealthParams(profile_weeks=1, lookback_days=1, min_profile_days=1)
    )
    replace_day_health(engine, day, report.counters)
    return report, {counter: report.status_of(counter).status for counter in faults}


def test_map_colours_the_counters_by_their_health(stack: Stack, browser, screenshots: Path) -> None:
    report, found = health_with_faults(stack.settings)
    assert sorted(found.values()) == ["low", "outage", "stuck"]
    shot = screenshots / "map-before-health.png"
    open_page(browser, stack.dashboard_url, lambda: map_points(browser) == 52, "the map", shot)
    label = browser.find_element(By.XPATH, f"//label[contains(., 'health on {report.day}')]")
    label.click()
    caption = f"Health checked on {report.day}: {len(report.faults())} of 52 counters with a fault"
    wait_for(browser, has_text(browser, caption), "the health mode")
    wait_for(browser, lambda: charts_drawn(browser), "the health map drawn")
    browser.save_screenshot(str(screenshots / "map-health.png"))
    assert error_elements(browser) == []
    # Each counter drawn in its status's colour; every status named in the legend.
    points = browser.find_elements(By.CSS_SELECTOR, "g.mark-symbol.role-mark path")
    fills = Counter(point.get_attribute("fill") for point in points)
    colours = charts.HEALTH_COLOURS
    assert fills == Counter(colours[health.status] for health in report.counters)
    legend = browser.find_element(By.CSS_SELECTOR, "g.role-legend").text
    assert all(status in legend for status in colours)


def test_counter_page_numbers_are_the_stores(stack: Stack, browser, screenshots: Path) -> None:
    url = f"{stack.dashboard_url}/counter?counter={quote(SEBASTOPOL)}"
    open_page(
        browser,
        url,
        has_text(browser, "Day by day"),
        "the counter page",
        screenshots / "counter.png",
    )
    assert error_elements(browser) == []
    header, *rows = table_rows(browser)
    assert header == [
        "day",
        "forecast by",
        "counted (bikes)",
        "forecast (bikes)",
        "MAE (bikes/hour)",
    ]
    engine = open_store(stack.settings.pipeline_db_url)
    counts = read_counts(engine)
    counts = counts[counts["counter"] == SEBASTOPOL]
    last = max(counts["day"])
    shown_days = sorted({row[0] for row in rows})
    assert len(shown_days) == stack.settings.dashboard_history_days
    assert shown_days[-1] == last.isoformat()
    for day, version, counted, forecast, _mae in rows:
        stored = counts[counts["day"] == date.fromisoformat(day)]["count"].sum()
        assert counted == f"{stored:.0f}", day
        predicted = read_predictions(engine, date.fromisoformat(day), "gbm")
        predicted = predicted[
            (predicted["counter"] == SEBASTOPOL)
            & (predicted["model_version"] == int(version.removeprefix("v")))
        ]
        assert forecast == f"{predicted['prediction'].sum():.0f}", day


def test_ask_the_model_answers_what_post_predict_answers(
    stack: Stack, browser, screenshots: Path
) -> None:
    open_page(
        browser,
        f"{stack.dashboard_url}/ask",
        lambda: bool(
            browser.find_elements(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button')
        ),
        "the ask form",
        screenshots / "ask-form.png",
    )
    browser.find_element(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button').click()
    open_answer = has_text(browser, "answers")
    wait_for(browser, open_answer, "the model's answer")
    wait_for(browser, lambda: charts_drawn(browser), "the answer's charts drawn")
    browser.save_screenshot(str(screenshots / "ask-answer.png"))
    assert error_elements(browser) == []
    header, row = table_rows(browser)
    assert header == ["counter", "time", "prediction"]
    counter, stamp, shown = row
    assert counter == SEBASTOPOL and stamp.endswith("T08:00:00+02:00")
    counters = read_counts(open_store(stack.settings.pipeline_db_url)).drop_duplicates("counter")
    place = counters[counters["counter"] == SEBASTOPOL].iloc[0]
    record = {
        "nom_du_compteur": SEBASTOPOL,
        "date_et_heure_de_comptage": stamp,
        "coordonnées_géographiques": f"{place['lat']:.6f},{place['lon']:.6f}",
    }
    answer = httpx.post(
        f"{stack.api_url}/predict", json={"records": [record], "model_type": "gbm"}
    ).json()
    assert shown == f"{answer['predictions'][0]:.1f}"
    assert float(shown) > 50  # the busiest counter of Paris at 8 am on a weekday


@pytest.mark.parametrize(
    ("page", "ready"),
    [("models", "Champion: v1"), ("monitoring", "Daily forecast errors")],
)
def test_models_and_monitoring_pages_render(
    stack: Stack, browser, screenshots: Path, page: str, ready: str
) -> None:
    open_page(
        browser,
        f"{stack.dashboard_url}/{page}",
        has_text(browser, ready),
        page,
        screenshots / f"{page}.png",
    )
    assert error_elements(browser) == []
    if page == "models":
        assert "No rf champion yet" in page_text(browser)  # only gbm was trained
    else:
        assert "No monitor-and-retrain decision recorded yet" in page_text(browser)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("", "The pipeline store holds no counts yet"),
        ("counter", "The pipeline store holds no counts yet"),
        ("models", "does not answer"),
        ("ask", "The RegModel API at"),
    ],
)
def test_down_and_empty_states_say_what_to_run(
    stack: Stack, browser, screenshots: Path, page: str, message: str
) -> None:
    shot = screenshots / f"down-{page or 'map'}.png"
    open_page(
        browser, f"{stack.broken_dashboard_url}/{page}", has_text(browser, message), message, shot
    )
    assert error_elements(browser) == []
    assert "bikecount up" in page_text(browser)
    assert "Traceback" not in page_text(browser)


def test_ask_the_model_forecasts_an_uploaded_file(
    stack: Stack, browser, screenshots: Path, downloads: Path, tmp_path: Path
) -> None:
    """An export file in the Explore API's field names, one row refused, comes back as a CSV
    whose forecasts are those POST /predict answers."""
    counts = read_counts(open_store(stack.settings.pipeline_db_url))
    rows = counts.sort_values(["timestamp", "counter"]).tail(30)
    upload = pd.DataFrame(
        {
            "nom_compteur": rows["counter"].to_numpy(),
            "date": [ts.isoformat() for ts in rows["timestamp"]],
            "coordinates": [
                f"{lat:.6f},{lon:.6f}" for lat, lon in zip(rows["lat"], rows["lon"], strict=True)
            ],
        }
    )
    upload.iloc[4, 1] = "not a date"
    path = tmp_path / "export-field-names.csv"
    upload.to_csv(path, sep=";", index=False)
    browser.get(f"{stack.dashboard_url}/ask")
    wait_for(browser, has_text(browser, "A file of records"), "the ask page's tabs")
    tab = browser.find_element(By.XPATH, "//*[@role='tab'][contains(., 'A file of records')]")
    tab.click()
    browser.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(path))
    wait_for(browser, has_text(browser, "Forecast 29 records"), "the checked upload")
    assert "1 of 30 records refused" in page_text(browser)
    go = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, "button")
        if b.text == "Forecast 29 records"
    )
    go.click()
    wait_for(browser, has_text(browser, "Download the forecasts"), "the forecasts")
    wait_for(browser, lambda: charts_drawn(browser), "the forecasts' charts drawn")
    browser.save_screenshot(str(screenshots / "ask-file.png"))
    assert error_elements(browser) == []
    browser.find_element(By.CSS_SELECTOR, '[data-testid="stDownloadButton"] button').click()
    saved = downloads / "export-field-names-forecasts.csv"
    helpers.wait_until(saved.exists, 30, f"{saved.name} downloaded")
    table = pd.read_csv(saved, sep=";")
    # The API takes intervals (its champion carries a calibration): the 80% bounds come too.
    assert list(table.columns) == [*upload.columns, "prediction", "lower", "upper", "model_version"]
    kept = upload.drop(index=upload.index[4])
    assert table["nom_compteur"].tolist() == kept["nom_compteur"].tolist()
    records = kept.to_dict("records")
    body = {"records": records, "model_type": "gbm", "interval": 0.8}
    answer = httpx.post(f"{stack.api_url}/predict", json=body).json()
    assert table["prediction"].tolist() == pytest.approx(answer["predictions"])
    assert table["lower"].tolist() == pytest.approx(answer["lower"])
    assert table["upper"].tolist() == pytest.approx(answer["upper"])
    assert (table["lower"] <= table["prediction"]).all()
    assert (table["prediction"] <= table["upper"]).all()
    assert set(table["model_version"]) == {answer["model_version"]}
